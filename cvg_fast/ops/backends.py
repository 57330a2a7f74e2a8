"""Which implementation runs a fused op: detection, choice and fallback.

Backends:
    reference   plain PyTorch, always available (autograd by torch)
    cpp         C++ kernels of the extension cvg_fast._C, for CPU tensors
    cuda        CUDA kernels of cvg_fast._C (built when nvcc was found), for CUDA tensors
    triton      Triton kernels of cvg_fast.kernels, for CUDA tensors; for CPU
                tensors only under TRITON_INTERPRET=1 (set before the kernels are imported)

The choice, first one set wins: the op's `backend=` argument, `set_backend()`,
the CVG_BACKEND environment variable, else "auto", which picks
    CUDA tensors:  cuda, else triton, else reference
    CPU tensors:   cpp, else reference
A backend asked for by name that cannot run the op on the tensors' device
falls back to the reference, with one warning per (backend, reason).

The extension is loaded on first use, never at `import cvg_fast`; a missing or
broken build only makes `cpp` / `cuda` unavailable (the reason is in
`available_backends()`).
"""

from __future__ import annotations

import logging
import os
import warnings
from types import ModuleType

import torch

__all__ = ["BACKENDS", "available_backends", "describe_backends", "resolve_backend", "set_backend"]

BACKENDS = ("reference", "cpp", "cuda", "triton")
OP_BACKENDS = {  # the backends implementing each op
    "gru_blend": BACKENDS,
    "gru_cell": BACKENDS,
    "pyramid_down": BACKENDS,
    "sn_power_iteration": BACKENDS,
}

logger = logging.getLogger("cvg_fast")

# a kernel each op registers in cvg_fast._C: a build from older sources may lack it
_EXTENSION_PROBE = {"gru_blend": "gru_blend_fwd", "gru_cell": "gru_reset_fwd",
                    "pyramid_down": "pyramid_down", "sn_power_iteration": "sn_power_iteration"}

_override: str | None = None
_status: dict[str, str] | None = None  # backend -> "ok" or why not; filled on first use
_triton_modules: dict[str, ModuleType] = {}
_warned: set[tuple[str, str]] = set()


def set_backend(name: str | None) -> None:
    """Use `name` for every op from now on; None: back to CVG_BACKEND, else "auto"."""
    global _override
    _override = None if name is None else _check_name(name, "set_backend")


@torch.compiler.assume_constant_result  # torch.compile runs the probe once, not into the graph
def available_backends() -> dict[str, str]:
    """{backend: "ok" or the reason it cannot run here}."""
    global _status
    if _status is None:
        _status = {"reference": "ok", "cpp": _extension_status()}
        _status["cuda"] = _cuda_status(_status["cpp"])
        _status["triton"] = _triton_status()
        logger.info("cvg_fast backends: %s", describe_backends())
    return dict(_status)


def describe_backends() -> str:
    """One line for logs and CLIs: each backend, ok or why not."""
    status = available_backends()
    return ", ".join(
        f"{name} {'ok' if why == 'ok' else f'no ({why})'}" for name, why in status.items()
    )


def resolve_backend(op: str, device: torch.device | str, requested: str | None = None) -> str:
    """The backend that runs `op` on tensors on `device`; `requested` is the op's argument."""
    if op not in OP_BACKENDS:
        raise ValueError(f"unknown op {op!r}; known ops: {', '.join(OP_BACKENDS)}")
    device = torch.device(device)
    choice = _requested(op, requested)
    if choice == "auto":
        order = ("cuda", "triton") if device.type == "cuda" else ("cpp",)
        usable = (b for b in order if b in OP_BACKENDS[op] and _op_runs_on(op, b, device) == "ok")
        return next(usable, "reference")
    why = (_op_runs_on(op, choice, device) if choice in OP_BACKENDS[op]
           else f"{op} has no {choice} kernel")
    if why == "ok":
        return choice
    if (choice, why) not in _warned:
        _warned.add((choice, why))
        warnings.warn(f"cvg_fast: backend {choice!r} unavailable ({why}); using 'reference'",
                      RuntimeWarning, stacklevel=3)
    return "reference"


def triton_module(name: str) -> ModuleType:
    """The Triton module cvg_fast.kernels.<name> (imported on first use)."""
    if name not in _triton_modules:
        import importlib

        _triton_modules[name] = importlib.import_module(f"cvg_fast.kernels.{name}")
    return _triton_modules[name]


def triton_kernels() -> ModuleType:
    """The cvg_fast.kernels.gru_blend module: HAS_TRITON / INTERPRETED live there."""
    return triton_module("gru_blend")


def _check_name(name: str, source: str) -> str:
    if name not in ("auto", *BACKENDS):
        raise ValueError(f"{source}: unknown backend {name!r}; use auto, {', '.join(BACKENDS)}")
    return name


def _requested(op: str, explicit: str | None) -> str:
    if explicit is not None:
        return _check_name(explicit, f"{op}(backend=...)")
    if _override is not None:
        return _override
    env = os.environ.get("CVG_BACKEND")
    return _check_name(env, "CVG_BACKEND") if env else "auto"


def _op_runs_on(op: str, backend: str, device: torch.device) -> str:
    """_runs_on, and for the extension's backends: does the loaded build have `op`?"""
    why = _runs_on(backend, device)
    if why == "ok" and backend in ("cpp", "cuda") and not _extension_has(op):
        return (f"this cvg_fast._C build has no {op} kernel (built from older sources): "
                f"pip install -e . --no-build-isolation")
    return why


@torch.compiler.assume_constant_result
def _extension_has(op: str) -> bool:
    if op not in _extension_ops:
        try:
            getattr(torch.ops.cvg_fast, _EXTENSION_PROBE[op])
            _extension_ops[op] = True
        except (AttributeError, RuntimeError):
            _extension_ops[op] = False
    return _extension_ops[op]


_extension_ops: dict[str, bool] = {}


def _runs_on(backend: str, device: torch.device) -> str:
    """"ok" if `backend` can run on `device`'s tensors, else why not."""
    kind = device.type
    if backend == "triton" and kind == "cpu":
        if not triton_kernels().HAS_TRITON:
            return "triton not installed"
        if not triton_kernels().INTERPRETED:
            return "triton runs on CPU tensors only under TRITON_INTERPRET=1"
        return "ok"
    why = available_backends()[backend]
    if why != "ok":
        return why
    home = {"cpp": "cpu", "cuda": "cuda", "triton": "cuda"}.get(backend, kind)  # reference: any
    return "ok" if kind == home else f"{backend} runs on {home.upper()} tensors, got {kind}"


def _extension_status() -> str:
    try:
        import cvg_fast._C  # noqa: F401  (loading it registers torch.ops.cvg_fast.*)
    except ModuleNotFoundError:
        return ("cvg_fast._C not built (a CVG_NO_EXT=1 install?): "
                "pip install -e . --no-build-isolation")
    except Exception as e:  # e.g. built against another torch: undefined symbols
        first_line = f"{type(e).__name__}: {e}".splitlines()[0]
        return f"cvg_fast._C failed to load ({first_line}); rebuild it against this torch"
    return "ok"


def _cuda_status(extension: str) -> str:
    if extension != "ok":
        return extension
    if not torch.ops.cvg_fast.has_cuda():
        return "cvg_fast._C built without CUDA (no nvcc at build time; rebuild with FORCE_CUDA=1)"
    if not torch.cuda.is_available():
        return "no CUDA device visible"
    return "ok"


def _triton_status() -> str:
    if not triton_kernels().HAS_TRITON:
        return "triton not installed"
    if not torch.cuda.is_available() and not triton_kernels().INTERPRETED:
        return "no CUDA device visible (CPU tensors need TRITON_INTERPRET=1)"
    return "ok"
