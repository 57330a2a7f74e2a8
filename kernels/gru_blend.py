"""gru_blend in Triton: the ConvGRU state update, forward and backward.

    h_new = h + z * (n - h),  z = sigmoid(z_pre), n = tanh(n_pre)
    dh = g * (1 - z),  dz_pre = g * (n - h) * z * (1 - z),  dn_pre = g * z * (1 - n * n)

Same math as csrc/gru_blend_cpu.cpp: 1 - z is sigmoid(-z_pre) and 1 - n * n is
4e / (1 + e)^2 with e = exp(-2 |n_pre|), as the textbook forms cancel when z
or |n| nears 1. Every load is cast to fp32 at once (fp64 for double inputs)
and cast back on store: in the interpreter bf16 arithmetic is silently wrong.
tanh is built from tl.exp because tl has no tanh and libdevice's fails under
TRITON_INTERPRET=1. No autotuning: one elementwise config is enough, and the
interpreter takes one config at most.

The launchers walk the operands as flat arrays, which is exact when they share
one dense layout (contiguous, channels_last, ...); otherwise they are made
contiguous first. This module imports without Triton: check `HAS_TRITON`.
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # the launchers below are then never called (see cvg_fast.ops.backends)
    HAS_TRITON = False

# triton.jit reads TRITON_INTERPRET when a kernel is defined, i.e. when this module
# is imported: kernels defined in interpreter mode run on CPU tensors, the others on GPUs.
INTERPRETED = HAS_TRITON and os.environ.get("TRITON_INTERPRET") == "1"

GPU_BLOCK, GPU_WARPS = 1024, 4
INTERPRETER_MAX_BLOCK = 1 << 16  # ~3 ms per program instance in the interpreter: few, large ones


def is_dense(t: torch.Tensor) -> bool:
    """True if t's elements fill its memory span exactly once, in any dim order."""
    expected = 1
    for stride, size in sorted((s, n) for s, n in zip(t.stride(), t.shape) if n != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def common_dense_layout(*ts: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The operands unchanged if they share one dense layout, else contiguous copies."""
    if is_dense(ts[0]) and all(t.stride() == ts[0].stride() for t in ts[1:]):
        return ts
    return tuple(t.contiguous() for t in ts)


def _launch_config(numel: int, block: int | None) -> tuple[int, int]:
    if block is None and INTERPRETED:
        block = min(triton.next_power_of_2(numel), INTERPRETER_MAX_BLOCK)
    elif block is None:
        block = GPU_BLOCK
    return block, triton.cdiv(numel, block)


def _acc_dtype(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


if HAS_TRITON:

    @triton.jit
    def _tanh_sech2(x, ACC: tl.constexpr):
        """(tanh(x), 1 - tanh(x)^2), both without cancellation, from e = exp(-2|x|) in (0, 1]."""
        e = tl.exp(-2 * tl.abs(x))
        t = (1 - e) / (1 + e)
        t = tl.where(x < 0, -t, t)
        if ACC == tl.float32:  # near 0, 1 - e cancels: Cephes' odd polynomial, as in the C++ kernel
            z = x * x
            p = -5.70498872745e-3 * z + 2.06390887954e-2
            p = p * z - 5.37397155531e-2
            p = p * z + 1.33314422036e-1
            p = p * z - 3.33332819422e-1
            t = tl.where(tl.abs(x) < 0.625, p * z * x + x, t)
        return t, 4 * e / ((1 + e) * (1 + e))

    @triton.jit
    def gru_blend_fwd_kernel(h_ptr, z_ptr, n_ptr, out_ptr, numel,
                             BLOCK: tl.constexpr, ACC: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < numel
        h = tl.load(h_ptr + offs, mask=mask).to(ACC)
        z = tl.sigmoid(tl.load(z_ptr + offs, mask=mask).to(ACC))
        n, _ = _tanh_sech2(tl.load(n_ptr + offs, mask=mask).to(ACC), ACC)
        out = h + z * (n - h)
        tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def gru_blend_bwd_kernel(g_ptr, h_ptr, z_ptr, n_ptr, dh_ptr, dz_ptr, dn_ptr, numel,
                             BLOCK: tl.constexpr, ACC: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < numel
        g = tl.load(g_ptr + offs, mask=mask).to(ACC)
        h = tl.load(h_ptr + offs, mask=mask).to(ACC)
        z_pre = tl.load(z_ptr + offs, mask=mask).to(ACC)
        z, one_minus_z = tl.sigmoid(z_pre), tl.sigmoid(-z_pre)  # 1 - z would cancel near z = 1
        n, sech2 = _tanh_sech2(tl.load(n_ptr + offs, mask=mask).to(ACC), ACC)
        g_one_minus_z = g * one_minus_z
        tl.store(dh_ptr + offs, g_one_minus_z.to(dh_ptr.dtype.element_ty), mask=mask)
        dz = g_one_minus_z * z * (n - h)
        tl.store(dz_ptr + offs, dz.to(dz_ptr.dtype.element_ty), mask=mask)
        tl.store(dn_ptr + offs, (g * z * sech2).to(dn_ptr.dtype.element_ty), mask=mask)


def gru_blend_fwd(h: torch.Tensor, z_pre: torch.Tensor, n_pre: torch.Tensor,
                  block: int | None = None) -> torch.Tensor:
    """h_new for same-shape, same-dtype h, z_pre, n_pre (any rank); `block` overrides BLOCK."""
    h, z_pre, n_pre = common_dense_layout(h, z_pre, n_pre)
    out = torch.empty_like(h)
    if out.numel():
        block, grid = _launch_config(out.numel(), block)
        gru_blend_fwd_kernel[(grid,)](h, z_pre, n_pre, out, out.numel(), BLOCK=block,
                                      ACC=_acc_dtype(h.dtype), num_warps=GPU_WARPS)
    return out


def gru_blend_bwd(grad: torch.Tensor, h: torch.Tensor, z_pre: torch.Tensor, n_pre: torch.Tensor,
                  block: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dh, dz_pre, dn_pre) from the output gradient and the forward's inputs."""
    grad, h, z_pre, n_pre = common_dense_layout(grad, h, z_pre, n_pre)
    dh, dz, dn = torch.empty_like(h), torch.empty_like(h), torch.empty_like(h)
    if h.numel():
        block, grid = _launch_config(h.numel(), block)
        gru_blend_bwd_kernel[(grid,)](grad, h, z_pre, n_pre, dh, dz, dn, h.numel(), BLOCK=block,
                                      ACC=_acc_dtype(h.dtype), num_warps=GPU_WARPS)
    return dh, dz, dn
