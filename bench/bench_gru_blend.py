"""Benchmark gru_blend: eager reference vs torch.compile of it vs every fused backend.

    python bench/bench_gru_blend.py                      # CUDA if visible, else CPU
    python bench/bench_gru_blend.py --device cpu --dtype float32 --no-compile

For ConvGRU-like (N, C, H, W) states, times the forward alone (under no_grad, as
in sampling) and forward + backward (as in training), medians of
torch.utils.benchmark, and prints each as ms and as speedup over eager.
Fused backends: cpp on CPU; cuda and triton on GPU.
"""

from __future__ import annotations

import argparse

import torch
import torch.utils.benchmark as benchmark

from cvg_fast.ops import backends
from cvg_fast.ops.gru_blend import gru_blend, gru_blend_reference

SHAPES = [(16, 128, 32, 32), (16, 64, 64, 64), (64, 256, 8, 8)]


def variants(device: torch.device, compile_ref: bool) -> dict:
    """{name: fn(h, z_pre, n_pre)} runnable on `device`."""
    out = {"eager": gru_blend_reference}
    if compile_ref:
        out["compile"] = torch.compile(gru_blend_reference, dynamic=False)
    status = backends.available_backends()
    for name in {"cpu": ("cpp",), "cuda": ("cuda", "triton")}.get(device.type, ()):
        if status[name] == "ok":
            out[name] = lambda h, z, n, name=name: gru_blend(h, z, n, backend=name)
    return out


def median_ms(stmt: str, env: dict, min_run_time: float) -> float:
    timer = benchmark.Timer(stmt=stmt, globals=env, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def bench(fn, shape, dtype, device, min_run_time) -> tuple[float, float]:
    """(forward ms, forward + backward ms) for fn on fresh random inputs."""
    h, z_pre, n_pre = (torch.randn(shape, device=device, dtype=dtype) for _ in range(3))
    grad = torch.randn_like(h)
    with torch.no_grad():
        for _ in range(3):  # warm-up: compile, allocator
            fn(h, z_pre, n_pre)
        fwd = median_ms("fn(h, z, n)", dict(fn=fn, h=h, z=z_pre, n=n_pre), min_run_time)
    leaves = [t.requires_grad_() for t in (h, z_pre, n_pre)]

    def step():
        torch.autograd.grad(fn(*leaves), leaves, grad)

    for _ in range(3):
        step()
    return fwd, median_ms("step()", dict(step=step), min_run_time)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", nargs="+", default=None,
                   help="default: float32 bfloat16 on CPU; float32 float16 bfloat16 on GPU")
    p.add_argument("--shape", nargs=4, type=int, action="append", metavar=("N", "C", "H", "W"),
                   help=f"repeatable; default {SHAPES}")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile of the reference")
    p.add_argument("--min-run-time", type=float, default=0.5, help="seconds per measurement")
    args = p.parse_args()

    device = torch.device(args.device)
    dtypes = args.dtype or (["float32", "bfloat16"] if device.type == "cpu"
                            else ["float32", "float16", "bfloat16"])
    shapes = [tuple(s) for s in args.shape] if args.shape else SHAPES
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {device} ({name}), threads: {torch.get_num_threads()}, "
          f"torch {torch.__version__}")
    print(f"backends: {backends.describe_backends()}")
    fns = variants(device, not args.no_compile)
    print(f"{'shape':>18} {'dtype':>9} {'variant':>8} | {'fwd ms':>8} {'x eager':>7} | "
          f"{'fwd+bwd ms':>10} {'x eager':>7}")
    for shape in shapes:
        for dtype_name in dtypes:
            dtype = getattr(torch, dtype_name)
            base = None
            for variant, fn in fns.items():
                if variant == "compile":  # fresh compile cache: else dynamo's recompile limit
                    torch._dynamo.reset()  # is hit after a few shapes and it falls back to eager
                fwd, both = bench(fn, shape, dtype, device, args.min_run_time)
                base = base or (fwd, both)
                print(f"{str(shape):>18} {dtype_name:>9} {variant:>8} | {fwd:8.3f} "
                      f"{base[0] / fwd:6.2f}x | {both:10.3f} {base[1] / both:6.2f}x", flush=True)


if __name__ == "__main__":
    main()
