"""sn_normalize: W / sigma(W) with one power-iteration step, the op every SN layer runs.

    u <- normalize(W v),  v <- normalize(W^T u)     (training only; u, v updated in place)
    sigma = u . W v,      out = W / sigma           (fp32; gradient through W only, as torch)

W: (O, ...) any shape, flattened to (O, I); u (O,), v (I,) fp32 buffers. The reference is
torch ops (two mv, two normalize, a dot, a division: ~10 small kernels per layer, which on
a GPU is ~60 layers x 10 launches per step). The fused backends (cpp, cuda, triton) run
the iteration and sigma as ONE kernel that reads W once (`sn_power_iteration`), then
W / sigma; the backward is d(W/sigma)/dW applied to the gradient g:

    dW = g / sigma - (sum(g * W) / sigma^2) u v^T

the same as autograd through the reference (u, v are constants there too).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from cvg_fast.ops.backends import resolve_backend, triton_module

__all__ = ["sn_normalize", "sn_normalize_reference"]

EPS = 1e-12


def sn_normalize_reference(weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                           update: bool, eps: float = EPS) -> torch.Tensor:
    """Plain torch: the definition. fp32 (or fp64) math, autocast off; the result in the
    weight's dtype."""
    with torch.autocast(weight.device.type, enabled=False):
        w = weight if weight.dtype == torch.float64 else weight.float()
        w_mat = w.flatten(1)
        if update:
            with torch.no_grad():
                u.copy_(F.normalize(torch.mv(w_mat.detach(), v), dim=0, eps=eps))
                v.copy_(F.normalize(torch.mv(w_mat.detach().t(), u), dim=0, eps=eps))
        uc = u.to(w.dtype).clone(memory_format=torch.contiguous_format)
        vc = v.to(w.dtype).clone(memory_format=torch.contiguous_format)
        sigma = torch.dot(uc, torch.mv(w_mat, vc))
        return (w / sigma).to(weight.dtype)


class _FusedNormalize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, u, v, sigma):
        ctx.save_for_backward(w, u, v, sigma)
        return w / sigma

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        w, u, v, sigma = ctx.saved_tensors
        # in fp64: the two terms nearly cancel for some entries, and the weights are small
        g64, w64, s64 = g.double(), w.double(), sigma.double()
        coef = (g64 * w64).sum() / (s64 * s64)
        d_w = g64 / s64 - coef * torch.outer(u.double(), v.double()).view_as(w64)
        return d_w.to(w.dtype), None, None, None


def sn_normalize(weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor, update: bool,
                 eps: float = EPS, backend: str | None = None) -> torch.Tensor:
    """W / sigma(W), after one in-place power-iteration step on (u, v) when `update`.

    backend: None (the global choice, see cvg_fast.ops.backends), "auto", "reference",
    "cpp", "cuda" or "triton". float64 weights run the reference (the kernels are fp32).
    """
    o = weight.shape[0]
    i = weight.numel() // max(o, 1)
    if u.shape != (o,) or v.shape != (i,):
        raise ValueError(f"sn_normalize: u must be ({o},) and v ({i},) for a weight of shape "
                         f"{tuple(weight.shape)}; got {tuple(u.shape)} and {tuple(v.shape)}")
    impl = resolve_backend("sn_power_iteration", weight.device, backend)
    if impl == "reference" or weight.dtype == torch.float64 or u.dtype != torch.float32:
        return sn_normalize_reference(weight, u, v, update, eps)
    kern = triton_module("sn_power_iteration") if impl == "triton" else torch.ops.cvg_fast
    with torch.autocast(weight.device.type, enabled=False):
        w = weight.float()
        with torch.no_grad():
            sigma = kern.sn_power_iteration(w.detach().flatten(1), u, v, eps, update)
        out = _FusedNormalize.apply(w, u.detach().clone(), v.detach().clone(), sigma)
    return out.to(weight.dtype)
