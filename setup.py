"""Build cvg_fast: the Python package and its optional extension `cvg_fast._C`.

The extension holds the fused C++ CPU ops (always) and CUDA ops (when torch is
a CUDA build and nvcc is found). Without it the package still works: the ops
fall back to their PyTorch reference or to Triton (see cvg_fast/ops/backends.py).

    pip install -e . --no-build-isolation       # torch must already be installed
    python setup.py build_ext --inplace         # incremental rebuild (ninja)

Environment:
    CVG_NO_EXT=1            pure-Python install, no extension
    CVG_NO_CUDA=1           C++ CPU ops only
    FORCE_CUDA=1            build the CUDA ops even without nvcc detection (CI)
    CUDA_HOME               CUDA toolkit; default /usr/local/cuda when it exists
    TORCH_CUDA_ARCH_LIST    GPU archs; default the visible GPUs', else "8.0;9.0"
    MAX_JOBS                parallel compile jobs (default 2)

The Triton sources in the top-level kernels/ directory ship inside the
package as `cvg_fast.kernels` (package_dir mapping below), never as a
top-level `kernels` package.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
DEFAULT_CUDA_ARCHS = "8.0;9.0"
# -fno-trapping-math and -ffp-contract=fast: see csrc/gru_blend_cpu.cpp (vectorisation, FMA).
CXX_FLAGS = ["-O3", "-std=c++20", "-fno-trapping-math", "-ffp-contract=fast"]
NVCC_FLAGS = ["-O3", "-std=c++20", "-lineinfo"]


def log(message: str) -> None:
    print(f"cvg_fast: {message}", flush=True)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def find_nvcc() -> Path | None:
    """nvcc under CUDA_HOME, else under /usr/local/cuda (then CUDA_HOME is set to it).

    A bare `nvcc` on PATH is not enough: torch derives CUDA_HOME from its
    location, which for wrapper scripts (/usr/local/bin/nvcc) is wrong.
    """
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if not home and Path("/usr/local/cuda/bin/nvcc").exists():
        home = os.environ["CUDA_HOME"] = "/usr/local/cuda"
    nvcc = Path(home or "/nonexistent", "bin", "nvcc")
    return nvcc if nvcc.exists() else None


def cuda_plan(torch) -> tuple[bool, str]:
    """(build the CUDA ops?, why not). Call before importing torch.utils.cpp_extension,
    which reads CUDA_HOME once at import."""
    nvcc = find_nvcc()
    if env_flag("CVG_NO_CUDA"):
        return False, "CVG_NO_CUDA=1"
    if torch.version.cuda is None:
        if env_flag("FORCE_CUDA"):
            raise SystemExit(
                f"cvg_fast: FORCE_CUDA=1 but torch {torch.__version__} is a CPU-only build")
        return False, f"torch {torch.__version__} is a CPU-only build"
    if env_flag("FORCE_CUDA"):
        return True, ""
    if nvcc is None:
        return False, "no nvcc under CUDA_HOME or /usr/local/cuda (set CUDA_HOME, or FORCE_CUDA=1)"
    return True, ""


def cuda_archs(torch) -> str:
    """TORCH_CUDA_ARCH_LIST, defaulted: torch cannot pick archs when no GPU is visible."""
    if not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        if not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCHS
        else:
            caps = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
            return ";".join(f"{major}.{minor}" for major, minor in sorted(caps)) + " (visible GPUs)"
    return os.environ["TORCH_CUDA_ARCH_LIST"]


def pip_cuda_include(torch) -> str | None:
    """Include dir of the pip CUDA headers (nvidia.cu13 for CUDA 13), if installed.

    Some toolkits (cut-down /usr/local/cuda) lack the cuBLAS/cuSPARSE headers
    that ATen's CUDA headers pull in; the pip package has them.
    """
    name = f"nvidia.cu{torch.version.cuda.split('.')[0]}"
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    include = Path(list(spec.submodule_search_locations)[0], "include")
    return str(include) if include.is_dir() else None


def extension_build() -> dict:
    """setup() arguments for cvg_fast._C: ext_modules, cmdclass, options."""
    if env_flag("CVG_NO_EXT"):
        log("CVG_NO_EXT=1: pure-Python install, no C++/CUDA extension")
        return {}
    try:
        import torch
    except ImportError as e:
        raise SystemExit(
            "cvg_fast: building the extension needs torch installed first: "
            "`pip install torch` then `pip install . --no-build-isolation`, "
            f"or set CVG_NO_EXT=1 for a pure-Python install ({e})"
        ) from None

    build_cuda, why_not = cuda_plan(torch)
    archs = cuda_archs(torch) if build_cuda else ""
    from torch.utils import cpp_extension  # after cuda_plan(): reads CUDA_HOME at import

    os.environ.setdefault("MAX_JOBS", "2")
    # at::parallel_for is inline OpenMP when torch uses OpenMP: without -fopenmp it runs serially.
    openmp = ["-fopenmp"] if torch._C.has_openmp else []
    csrc = ROOT / "csrc"
    sources = sorted(str(p.relative_to(ROOT)) for p in csrc.glob("*.cpp"))
    headers = sorted(str(p.relative_to(ROOT)) for p in csrc.glob("*.h"))  # rebuild + sdist
    common = dict(include_dirs=[str(csrc)], depends=headers, py_limited_api=True)
    if build_cuda:
        log(f"building C++ CPU ops + CUDA ops for arch {archs} (MAX_JOBS={os.environ['MAX_JOBS']})")
        sources += sorted(str(p.relative_to(ROOT)) for p in csrc.glob("*.cu"))
        # Our dirs, then torch's, then the pip CUDA headers last (fill gaps only).
        common["include_dirs"] += cpp_extension.include_paths(device_type="cuda")
        extra = pip_cuda_include(torch)
        if extra:
            common["include_dirs"].append(extra)
        ext = cpp_extension.CUDAExtension(
            "cvg_fast._C",
            sources,
            define_macros=[("WITH_CUDA", None)],
            extra_compile_args={"cxx": CXX_FLAGS + openmp, "nvcc": NVCC_FLAGS},
            extra_link_args=openmp,
            **common,
        )
    else:
        log(f"building C++ CPU ops; skipping CUDA: {why_not} (MAX_JOBS={os.environ['MAX_JOBS']})")
        ext = cpp_extension.CppExtension(
            "cvg_fast._C", sources, extra_compile_args={"cxx": CXX_FLAGS + openmp},
            extra_link_args=openmp, **common
        )

    class BuildExt(cpp_extension.BuildExtension.with_options(use_ninja=True)):
        def copy_file(self, infile, outfile, *args, **kwargs):
            """In-place builds (-e, --inplace) swap the library in atomically: processes that
            have the old one loaded keep it instead of crashing on a file rewritten under them."""
            tmp = f"{outfile}.{os.getpid()}.tmp"
            _, copied = super().copy_file(infile, tmp, *args, **kwargs)
            os.replace(tmp, outfile)
            return outfile, copied

    return dict(
        ext_modules=[ext],
        cmdclass={"build_ext": BuildExt},
        options={"bdist_wheel": {"py_limited_api": "cp310"}},
    )


setup(
    packages=[*find_packages(include=["cvg_fast", "cvg_fast.*"]), "cvg_fast.kernels"],
    package_dir={"cvg_fast.kernels": "kernels"},
    **extension_build(),
)
