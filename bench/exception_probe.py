"""Does an error raised inside ANY C++ torch op extension crash this torch install?

Builds three one-line TORCH_LIBRARY ops (with torch's default flags, -std=c++20, and
cvg_fast's own flags) whose kernel fails a TORCH_CHECK, calls each in a fresh process, and
prints "raised: ..." (healthy) or "rc -11" (the process died with SIGSEGV). On the H200
image of 2026-11-26 (torch 2.11.0+cu130, g++ 13.3) all three died, so cvg_fast's own
segfaults on bad input there (bench/results/h200_20261126/) are the install's, not ours.

    python bench/exception_probe.py      # about a minute: three small compiles
"""
import subprocess, sys
src = r'''
#include <torch/library.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
at::Tensor boom_%(tag)s(const at::Tensor& x) { TORCH_CHECK(x.dim() == 99, "boom: dim ", x.dim()); return x; }
TORCH_LIBRARY(probe_%(tag)s, m) { m.def("boom(Tensor x) -> Tensor"); }
TORCH_LIBRARY_IMPL(probe_%(tag)s, CPU, m) { m.impl("boom", &boom_%(tag)s); }
'''
for tag, flags in (("std17", ["-O2"]), ("std20", ["-O2", "-std=c++20"]), ("std20f", ["-O3", "-std=c++20", "-fno-trapping-math", "-ffp-contract=fast"])):
    code = f'''
import torch
from torch.utils.cpp_extension import load_inline
load_inline("probe_{tag}", cpp_sources={src % {"tag": tag}!r}, extra_cflags={flags!r}, is_python_module=False, verbose=False)
try:
    torch.ops.probe_{tag}.boom(torch.zeros(2))
except RuntimeError as e:
    print("raised:", str(e).splitlines()[0])
'''
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    print(tag, "rc", r.returncode, r.stdout.strip(), r.stderr.strip()[-300:] if r.returncode else "")
