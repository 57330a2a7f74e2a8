"""gru_blend: every available backend against a float64 reference, the backend
dispatch rules, and how the extension and the Triton kernels are packaged.

The Triton kernels run on CPU tensors only in the interpreter, and
TRITON_INTERPRET=1 must be set before they are defined; setting it here would
leak into every other test module. So `test_triton_kernels_in_interpreter`
reruns this file's `triton_cpu` cases in a subprocess with the variable set.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from cvg_fast.ops import backends
from cvg_fast.ops.gru_blend import gru_blend, gru_blend_reference

ROOT = Path(__file__).resolve().parents[1]

# Allowed error against the float64 reference, per dtype: (atol, rtol) applied as
# |got - want| <= atol + rtol * |want|.
#   fused:     fp32 math, one rounding to the dtype (bf16: one ulp, since the Triton
#              interpreter truncates instead of rounding to nearest)
#   reference: torch rounds every intermediate (z, 1 - z, the products) to the dtype
TOL = {
    #                 fused             reference
    torch.float32: ((1e-6, 1e-6), (1e-6, 1e-6)),
    torch.float16: ((1e-3, 1e-3), (4e-3, 4e-3)),
    torch.bfloat16: ((8e-3, 8e-3), (3e-2, 3e-2)),
}
DTYPES = list(TOL)
SHAPE = (3, 5, 7, 11)  # odd everything: no multiple of any vector width or block
LAYOUTS = ("contiguous", "channels_last", "mixed", "chunked")

_status = backends.available_backends()
_on_gpu = torch.cuda.is_available()
_interpreted = _status["triton"] == "ok" and backends.triton_kernels().INTERPRETED


def _case(backend: str, device: str, case_id: str, skip_reason: str | None):
    marks = [pytest.mark.skip(reason=skip_reason)] if skip_reason else []
    return pytest.param(backend, device, id=case_id, marks=marks)


def _why_not(backend: str) -> str | None:
    return None if _status[backend] == "ok" else _status[backend]


CASES = [
    _case("reference", "cpu", "reference", None),
    _case("cpp", "cpu", "cpp", _why_not("cpp")),
    _case("cuda", "cuda", "cuda", _why_not("cuda")),
    _case("triton", "cuda", "triton_gpu", _why_not("triton") if _on_gpu else "no GPU"),
    _case("triton", "cpu", "triton_cpu",
          None if _interpreted else "runs in test_triton_kernels_in_interpreter's subprocess"),
]
FUSED = [c for c in CASES if c.values[0] != "reference"]


def _tol(backend: str, dtype: torch.dtype) -> dict:
    atol, rtol = TOL[dtype][backend == "reference"]
    return dict(atol=atol, rtol=rtol)


def make_inputs(shape, dtype, device, layout="contiguous", seed=0):
    """(h, z_pre, n_pre, grad) in `layout`; z_pre, n_pre ~ N(0, 9) to reach saturation.

    mixed: h channels_last, the rest contiguous. chunked: z_pre and n_pre are halves
    of a (N, 2C, H, W) tensor along C, as ConvGRU's gate conv yields (not dense).
    """
    gen = torch.Generator().manual_seed(seed)
    h, grad = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    if layout == "chunked":
        wide = (shape[0], 2 * shape[1], *shape[2:])
        z_pre = (3 * torch.randn(wide, generator=gen)).chunk(2, dim=1)[1]
        n_pre = (3 * torch.randn(wide, generator=gen)).chunk(2, dim=1)[0]
    else:
        z_pre, n_pre = 3 * torch.randn(shape, generator=gen), 3 * torch.randn(shape, generator=gen)
    ts = [t.to(device=device, dtype=dtype) for t in (h, z_pre, n_pre, grad)]
    if layout == "channels_last":
        ts = [t.contiguous(memory_format=torch.channels_last) for t in ts]
    elif layout == "mixed":
        ts[0] = ts[0].contiguous(memory_format=torch.channels_last)
    return ts


def reference64(h, z_pre, n_pre, grad):
    """Forward and (dh, dz_pre, dn_pre) in float64 from the dtype-rounded inputs."""
    leaves = [t.detach().double().requires_grad_() for t in (h, z_pre, n_pre)]
    out = gru_blend_reference(*leaves)
    return out.detach(), torch.autograd.grad(out, leaves, grad.double())


def run(backend, h, z_pre, n_pre, grad):
    """Forward and gradients through the public op with `backend`."""
    leaves = [t.detach().requires_grad_() for t in (h, z_pre, n_pre)]
    out = gru_blend(*leaves, backend=backend)
    return out, torch.autograd.grad(out, leaves, grad)


def assert_close(got, want, backend, what):
    tol = _tol(backend, got.dtype)
    torch.testing.assert_close(got.double(), want, **tol, msg=lambda m: f"{backend} {what}: {m}")


# ---- numerics ------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend,device", CASES)
def test_forward(backend, device, dtype, layout):
    h, z_pre, n_pre, grad = make_inputs(SHAPE, dtype, device, layout)
    out = gru_blend(h, z_pre, n_pre, backend=backend)
    want, _ = reference64(h, z_pre, n_pre, grad)
    assert out.dtype == dtype and out.device == h.device
    assert_close(out, want, backend, "forward")
    if backend != "reference":  # fused: a shared dense layout is kept, else contiguous
        assert out.stride() == (h.stride() if layout in ("contiguous", "channels_last")
                                else h.contiguous().stride())


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend,device", CASES)
def test_gradients(backend, device, dtype, layout):
    h, z_pre, n_pre, grad = make_inputs(SHAPE, dtype, device, layout, seed=1)
    _, grads = run(backend, h, z_pre, n_pre, grad)
    _, want = reference64(h, z_pre, n_pre, grad)
    for name, got, ref in zip(("dh", "dz_pre", "dn_pre"), grads, want):
        assert got.dtype == dtype and got.shape == h.shape
        assert_close(got, ref, backend, name)


@pytest.mark.parametrize("shape,offset", [
    pytest.param((1,), 0, id="one"),
    pytest.param((2, 3, 4, 5, 6), 0, id="rank5"),
    pytest.param((70_001,), 0, id="many_blocks"),   # > one parallel task / one block
    pytest.param(SHAPE, 1, id="unaligned"),         # storage offset 1: no 16-byte packs
])
@pytest.mark.parametrize("backend,device", CASES)
def test_odd_sizes(backend, device, shape, offset):
    torch.manual_seed(2)

    def make(scale):  # a contiguous view starting `offset` elements into its storage
        flat = scale * torch.randn(math.prod(shape) + offset, device=device)
        return flat[offset:].view(shape)

    h, z_pre, n_pre, grad = make(1), make(3), make(3), make(1)
    assert h.storage_offset() == offset
    out, grads = run(backend, h, z_pre, n_pre, grad)
    want, want_grads = reference64(h, z_pre, n_pre, grad)
    assert_close(out, want, backend, "forward")
    for name, got, ref in zip(("dh", "dz_pre", "dn_pre"), grads, want_grads):
        assert_close(got, ref, backend, name)


@pytest.mark.parametrize("backend,device", CASES)
def test_empty(backend, device):
    h, z_pre, n_pre, grad = (torch.empty(0, 4, 3, 3, device=device) for _ in range(4))
    out, grads = run(backend, h, z_pre, n_pre, grad)
    assert out.shape == (0, 4, 3, 3) and all(g.shape == (0, 4, 3, 3) for g in grads)


@pytest.mark.parametrize("backend,device", CASES)
def test_nonfinite_inputs_match_reference(backend, device):
    """Saturated and infinite pre-activations give the limits; NaN propagates."""
    inf, nan = float("inf"), float("nan")
    special = [-inf, -100.0, -20.0, -1e-3, 0.0, 1e-3, 20.0, 100.0, inf, nan]
    z_pre, n_pre = torch.tensor(special).repeat_interleave(10), torch.tensor(special).repeat(10)
    h = torch.linspace(-2, 2, 100)
    h[7] = float("nan")
    h, z_pre, n_pre = (t.to(device) for t in (h, z_pre, n_pre))
    out = gru_blend(h, z_pre, n_pre, backend=backend)
    want = gru_blend_reference(h.double(), z_pre.double(), n_pre.double())
    torch.testing.assert_close(out.double(), want, atol=1e-6, rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize("backend,device", CASES)
def test_gradcheck_float64(backend, device):
    inputs = make_inputs((2, 3, 2, 2), torch.float64, device)[:3]
    h, z_pre, n_pre = (t.requires_grad_() for t in inputs)
    assert torch.autograd.gradcheck(lambda *xs: gru_blend(*xs, backend=backend), (h, z_pre, n_pre))


@pytest.mark.parametrize("backend,device", FUSED)
def test_fused_saves_inputs_only_and_refuses_double_backward(backend, device):
    leaves = [t.requires_grad_() for t in make_inputs(SHAPE, torch.float32, device)[:3]]
    out = gru_blend(*leaves, backend=backend)
    saved = out.grad_fn.saved_tensors
    assert len(saved) == 3 and all(s.data_ptr() == x.data_ptr() for s, x in zip(saved, leaves))
    grads = torch.autograd.grad((out * out).sum(), leaves, create_graph=True)  # R1-penalty style
    with pytest.raises(RuntimeError, match="differentiate twice"):
        sum(g.sum() for g in grads).backward()


def test_triton_kernels_in_interpreter():
    """Reruns every triton_cpu case above in a subprocess with TRITON_INTERPRET=1."""
    if _interpreted:
        pytest.skip("already in the interpreter: the triton_cpu cases run here directly")
    if not backends.triton_kernels().HAS_TRITON:
        pytest.skip("triton not installed")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-k", "triton_cpu",
         "-p", "no:cacheprovider",
         "-W", "error:cvg_fast:RuntimeWarning"],  # a fallback to the reference would fail
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    assert passed >= 30 and "failed" not in summary and "skipped" not in summary, summary


# ---- dispatch ------------------------------------------------------------------------------


def _impl(out: torch.Tensor) -> str:
    """Which implementation built `out`, from its autograd node."""
    name = type(out.grad_fn).__name__
    fused = {"_ExtGruBlendBackward": "ext", "_TritonGruBlendBackward": "triton"}
    return fused.get(name, "reference")


@pytest.fixture
def clean_dispatch(monkeypatch):
    """No CVG_BACKEND, no set_backend() override, warnings not yet given."""
    monkeypatch.delenv("CVG_BACKEND", raising=False)
    monkeypatch.setattr(backends, "_override", None)
    monkeypatch.setattr(backends, "_warned", set())


def _cpu_leaves():
    return [t.requires_grad_() for t in make_inputs((2, 3, 4, 4), torch.float32, "cpu")[:3]]


def test_explicit_backend_names(clean_dispatch):
    assert backends.resolve_backend("gru_blend", "cpu", "reference") == "reference"
    assert _impl(gru_blend(*_cpu_leaves(), backend="reference")) == "reference"
    auto = backends.resolve_backend("gru_blend", "cpu", "auto")
    if _status["cpp"] == "ok":
        assert backends.resolve_backend("gru_blend", "cpu", "cpp") == "cpp" == auto
        assert _impl(gru_blend(*_cpu_leaves(), backend="cpp")) == "ext"
        assert _impl(gru_blend(*_cpu_leaves())) == "ext"
    else:
        assert auto == "reference"
    if _on_gpu:
        gpu = backends.resolve_backend("gru_blend", "cuda", None)
        assert gpu == ("cuda" if _status["cuda"] == "ok" else
                       "triton" if _status["triton"] == "ok" else "reference")


def test_unknown_names_raise(clean_dispatch, monkeypatch):
    with pytest.raises(ValueError, match=r"gru_blend\(backend=...\): unknown backend 'fast'"):
        gru_blend(*_cpu_leaves(), backend="fast")
    with pytest.raises(ValueError, match="unknown backend"):
        backends.set_backend("cudnn")
    with pytest.raises(ValueError, match="unknown op"):
        backends.resolve_backend("lstm_cell", "cpu")
    monkeypatch.setenv("CVG_BACKEND", "gpu")
    with pytest.raises(ValueError, match="CVG_BACKEND: unknown backend 'gpu'"):
        gru_blend(*_cpu_leaves())


def test_unavailable_backend_falls_back_with_one_warning(clean_dispatch):
    h, z_pre, n_pre = _cpu_leaves()
    with pytest.warns(RuntimeWarning, match="backend 'cuda' unavailable .*using 'reference'"):
        out = gru_blend(h, z_pre, n_pre, backend="cuda")  # never runs on CPU tensors
    assert _impl(out) == "reference"
    torch.testing.assert_close(out, gru_blend_reference(h, z_pre, n_pre))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same (backend, reason) does not warn again
        assert _impl(gru_blend(h, z_pre, n_pre, backend="cuda")) == "reference"


def test_env_var_and_override_precedence(clean_dispatch, monkeypatch):
    monkeypatch.setenv("CVG_BACKEND", "reference")
    assert backends.resolve_backend("gru_blend", "cpu") == "reference"
    assert _impl(gru_blend(*_cpu_leaves())) == "reference"
    if _status["cpp"] == "ok":
        backends.set_backend("cpp")  # set_backend beats the environment, the argument both
        assert _impl(gru_blend(*_cpu_leaves())) == "ext"
        assert backends.resolve_backend("gru_blend", "cpu", "reference") == "reference"
        backends.set_backend(None)
        assert backends.resolve_backend("gru_blend", "cpu") == "reference"
        monkeypatch.setenv("CVG_BACKEND", "auto")
        assert backends.resolve_backend("gru_blend", "cpu") == "cpp"


def test_missing_extension_falls_back_to_reference():
    """Without cvg_fast._C (CVG_NO_EXT=1 installs) import and ops work, on the reference."""
    code = (
        "import sys, warnings\n"
        "class NoExtension:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'cvg_fast._C': raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, NoExtension())\n"
        "import torch\n"
        "from cvg_fast.ops import backends, gru_blend, gru_blend_reference\n"
        "h = torch.randn(2, 3)\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    out = gru_blend(h, h, h)\n"
        "    assert not caught, caught\n"
        "    gru_blend(h, h, h, backend='cpp'); gru_blend(h, h, h, backend='cpp')\n"
        "assert len(caught) == 1 and 'not built' in str(caught[0].message), caught\n"
        "assert backends.resolve_backend('gru_blend', 'cpu') == 'reference'\n"
        "assert backends.available_backends()['cuda'].startswith('cvg_fast._C not built')\n"
        "torch.testing.assert_close(out, gru_blend_reference(h, h, h), rtol=0, atol=0)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CVG_BACKEND"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_input_validation():
    a, b = torch.randn(2, 3), torch.randn(3, 2)
    with pytest.raises(ValueError, match=r"z_pre has shape \(3, 2\) but h has \(2, 3\)"):
        gru_blend(a, b, a)
    with pytest.raises(ValueError, match="n_pre is torch.float64 but h is torch.float32"):
        gru_blend(a, a, a.double())
    with pytest.raises(ValueError, match="floating-point"):
        gru_blend(*(torch.ones(2, dtype=torch.int32) for _ in range(3)))


def test_available_and_describe_backends():
    status = backends.available_backends()
    assert set(status) == set(backends.BACKENDS) and status["reference"] == "ok"
    line = backends.describe_backends()
    assert "\n" not in line and all(name in line for name in backends.BACKENDS)


@pytest.mark.skipif(_status["cpp"] != "ok", reason=_status["cpp"])
def test_meta_kernels_give_shape_and_layout():
    """FakeTensor / torch.compile tracing sees the same outputs as the real kernels."""
    h = torch.empty(2, 3, 4, 5, device="meta").contiguous(memory_format=torch.channels_last)
    out = torch.ops.cvg_fast.gru_blend_fwd(h, h, h)
    assert out.device.type == "meta" and out.shape == h.shape and out.stride() == h.stride()
    grads = torch.ops.cvg_fast.gru_blend_bwd(h.contiguous(), h, h, h)  # mixed layouts: contiguous
    assert all(g.shape == h.shape and g.is_contiguous() for g in grads)


@pytest.mark.skipif(_status["cpp"] != "ok", reason=_status["cpp"])
def test_compiles_without_graph_breaks():
    """torch.compile(fullgraph=True) traces dispatch and the fused op (via its Meta kernel)."""
    graphs = []

    def aot_eager_recording(gm, example_inputs):
        modules = (m for m in gm.modules() if isinstance(m, torch.fx.GraphModule))
        graphs.append("\n".join(m.code for m in modules))
        return torch._dynamo.lookup_backend("aot_eager")(gm, example_inputs)

    step = torch.compile(lambda *xs: 2 * gru_blend(*xs, backend="cpp"), fullgraph=True,
                         backend=aot_eager_recording)
    h, z_pre, n_pre, grad = make_inputs(SHAPE, torch.float32, "cpu")
    leaves = [t.requires_grad_() for t in (h, z_pre, n_pre)]
    out = step(*leaves) / 2
    grads = torch.autograd.grad(out, leaves, grad)
    assert len(graphs) == 1 and "cvg_fast.gru_blend_fwd" in graphs[0]
    want, want_grads = reference64(h, z_pre, n_pre, grad)
    assert_close(out, want, "cpp", "forward")
    for name, got, ref in zip(("dh", "dz_pre", "dn_pre"), grads, want_grads):
        assert_close(got, ref, "cpp", name)


# ---- packaging -----------------------------------------------------------------------------


def test_kernels_ship_as_subpackage_only(tmp_path):
    """Installed, cvg_fast.kernels imports and a top-level `kernels` does not (outside the repo)."""
    code = (
        "import importlib.util, cvg_fast.kernels.gru_blend as k\n"
        "assert k.__name__ == 'cvg_fast.kernels.gru_blend', k.__name__\n"
        "assert hasattr(k, 'HAS_TRITON') and callable(k.gru_blend_fwd)\n"
        "assert importlib.util.find_spec('kernels') is None, importlib.util.find_spec('kernels')\n"
    )
    probe = subprocess.run([sys.executable, "-I", "-c", "import cvg_fast"], cwd=tmp_path,
                           capture_output=True, text=True)
    if probe.returncode:
        pytest.skip("cvg_fast is not installed (pip install -e . --no-build-isolation)")
    proc = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr


def _nvcc_found() -> bool:
    home = os.environ.get("CUDA_HOME") or "/usr/local/cuda"
    return Path(home, "bin", "nvcc").exists()


@pytest.mark.skipif(not (torch.version.cuda and _nvcc_found()),
                    reason="needs a CUDA torch and nvcc")
@pytest.mark.skipif(_status["cpp"] != "ok", reason=_status["cpp"])
def test_extension_has_cuda_kernels():
    """Built where nvcc exists (FORCE_CUDA=1 in CI), the extension carries the CUDA kernels."""
    for op in ("cvg_fast::gru_blend_fwd", "cvg_fast::gru_blend_bwd"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA"), op
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CPU"), op
    assert torch.ops.cvg_fast.has_cuda()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_cpp_tests_pass_under_ctest():
    """tests/cpp via CMake against libtorch: builds in build/cmake (incremental), runs ctest."""
    proc = subprocess.run(["bash", str(ROOT / "tests/cpp/run_ctest.sh")], cwd=ROOT,
                          env={**os.environ, "PYTHON": sys.executable}, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "100% tests passed" in proc.stdout
