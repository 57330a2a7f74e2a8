"""gru_blend: the ConvGRU state update, one fused pass instead of six.

    h_new = (1 - z) * h + z * n,   z = sigmoid(z_pre),  n = tanh(n_pre)

h, z_pre, n_pre, h_new: one shape (typically (N, C, H, W)), dtype and device.
The reference is six elementwise torch ops per time step, each a full pass
over the tensor, and autograd keeps z and n alive for the backward. The fused
backends (cpp, cuda, triton) read the three inputs once and write h_new once,
save only the inputs, and recompute z and n in a single backward pass; math is
in fp32 whatever the input dtype (fp64 for double).

Layout: if the inputs share one dense layout (contiguous or channels_last) the
fused output has it too; otherwise the inputs are copied to contiguous first
(ConvGRU's `z_pre = gates.chunk(2, 1)[1]` is such a non-dense view).
Non-finite z_pre / n_pre saturate as in the reference and NaN propagates; an
infinite h gives NaN where the reference may give inf. Double backward through
the fused backends is not supported (it raises).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from cvg_fast.ops.backends import resolve_backend, triton_kernels

__all__ = ["gru_blend", "gru_blend_reference"]


def gru_blend_reference(h: torch.Tensor, z_pre: torch.Tensor, n_pre: torch.Tensor) -> torch.Tensor:
    """Plain PyTorch: the definition the fused kernels are tested against."""
    z = torch.sigmoid(z_pre)
    return (1 - z) * h + z * torch.tanh(n_pre)


class _ExtGruBlend(torch.autograd.Function):
    """cvg_fast._C kernels: the dispatcher picks the CPU (cpp) or CUDA (cuda) one."""

    @staticmethod
    def forward(ctx, h, z_pre, n_pre):
        ctx.save_for_backward(h, z_pre, n_pre)
        return torch.ops.cvg_fast.gru_blend_fwd(h, z_pre, n_pre)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        return torch.ops.cvg_fast.gru_blend_bwd(grad, *ctx.saved_tensors)


class _TritonGruBlend(torch.autograd.Function):
    """cvg_fast.kernels.gru_blend Triton kernels."""

    @staticmethod
    def forward(ctx, h, z_pre, n_pre):
        ctx.save_for_backward(h, z_pre, n_pre)
        return triton_kernels().gru_blend_fwd(h, z_pre, n_pre)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        return triton_kernels().gru_blend_bwd(grad, *ctx.saved_tensors)


def gru_blend(h: torch.Tensor, z_pre: torch.Tensor, n_pre: torch.Tensor,
              backend: str | None = None) -> torch.Tensor:
    """h_new = (1 - sigmoid(z_pre)) * h + sigmoid(z_pre) * tanh(n_pre), differentiable.

    backend: None (the global choice, see cvg_fast.ops.backends), "auto",
    "reference", "cpp", "cuda" or "triton".
    """
    for name, t in (("z_pre", z_pre), ("n_pre", n_pre)):
        if t.shape != h.shape:
            raise ValueError(
                f"gru_blend: {name} has shape {tuple(t.shape)} but h has {tuple(h.shape)}")
        if t.dtype != h.dtype:
            raise ValueError(
                f"gru_blend: {name} is {t.dtype} but h is {h.dtype}; cast them to one dtype")
        if t.device != h.device:
            raise ValueError(f"gru_blend: {name} is on {t.device} but h is on {h.device}")
    if not h.is_floating_point():
        raise ValueError(f"gru_blend: needs floating-point tensors, got {h.dtype}")
    impl = resolve_backend("gru_blend", h.device, backend)
    if impl == "reference":
        return gru_blend_reference(h, z_pre, n_pre)
    if impl == "triton":
        return _TritonGruBlend.apply(h, z_pre, n_pre)
    return _ExtGruBlend.apply(h, z_pre, n_pre)
