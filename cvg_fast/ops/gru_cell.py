"""gru_cell: one ConvGRU time step, the two recurrent convolutions and everything around them.

    g  = g_x + conv(h, w_g)                 (N, 2C, H, W)  gate pre-activations
    r, z = sigmoid(g[:, :C]), sigmoid(g[:, C:])
    n  = tanh(n_x + conv(r * h, w_n))       (N, C, H, W)
    h' = (1 - z) * h + z * n

g_x, n_x are the input's halves of the two convolutions (conv(x_t, W_x) + bias), which
do not depend on h: ConvGRU runs them once for the whole sequence as one batched conv
and passes time slices here (strided views, no copies). w_g (2C, C, k, k) and w_n
(C, C, k, k) are the h-halves of the spectrally normalised weights.

Why fused: the reference is ~12 elementwise torch ops per step, each a full pass, and
autograd keeps g, r, r*h, z, n alive for the backward. The fused step (cpp, cuda,
triton backends) runs two pointwise kernels each way around the convolutions:
    forward   gh = conv(h); rh = reset(g_x, gh, h); nh = conv(rh); h' = update(...)
    backward  update_bwd -> conv_bwd(nh) -> reset_bwd -> conv_bwd(gh)
saves only (g_x, gh, n_x, nh, h) and recomputes r, z, n and r*h in the backward;
the pointwise math is fp32 whatever the storage dtype (fp64 for double).

Precision: the step runs in h's dtype (ConvGRU makes it the autocast dtype under
autocast). The weights' compute-dtype copies may be given once per sequence
(w_g_c, w_n_c); the weight gradients come back in the weights' own dtype (fp32) per
step, so summing them over time steps happens in fp32, as autocast's per-call casts do.
Double backward through the fused step is not supported (it raises).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from cvg_fast.ops.backends import resolve_backend, triton_module

__all__ = ["gru_cell", "gru_cell_reference", "gru_sequence"]


def gru_cell_reference(g_x: torch.Tensor, n_x: torch.Tensor, h: torch.Tensor, w_g: torch.Tensor,
                       w_n: torch.Tensor, padding: int) -> torch.Tensor:
    """Plain PyTorch (autograd by torch, autocast applies to the convs): the definition."""
    g = g_x + F.conv2d(h, w_g, padding=padding)
    r_pre, z_pre = g.chunk(2, dim=1)
    n = torch.tanh(n_x + F.conv2d(torch.sigmoid(r_pre) * h, w_n, padding=padding))
    z = torch.sigmoid(z_pre)
    return h + z * (n - h)


def _kernels(backend: str):
    """The four pointwise kernels of `backend` (same names and signatures everywhere)."""
    if backend == "torch-pointwise":  # tests: the fused schedule on plain-torch kernels
        return TorchPointwise
    if backend == "triton":
        return triton_module("gru_cell")
    return torch.ops.cvg_fast


def _mergeable(t: torch.Tensor) -> torch.Tensor:
    """t unchanged if its H and W merge into one index (stride(2) == W * stride(3)), which
    every kernel needs; else a contiguous copy (never hit by ConvGRU's own tensors)."""
    if t.shape[2] == 1 or t.shape[3] == 1 or t.stride(2) == t.shape[3] * t.stride(3):
        return t
    return t.contiguous()


def _conv_bwd(grad: torch.Tensor, inp: torch.Tensor, weight: torch.Tensor, padding: int,
              need_input: bool = True, need_weight: bool = True
              ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(d input, d weight) of a stride-1, bias-free conv2d; None where not asked for."""
    d_in, d_w, _ = torch.ops.aten.convolution_backward(
        grad, inp, weight, None, [1, 1], [padding, padding], [1, 1], False, [0, 0], 1,
        [need_input, need_weight, False])
    return d_in, d_w


class _FusedCell(torch.autograd.Function):
    """One time step on a fused backend; see the module docstring for the schedule."""

    @staticmethod
    def forward(ctx, g_x, n_x, h, w_g, w_n, w_g_c, w_n_c, padding, backend):
        k = _kernels(backend)
        with torch.autocast(h.device.type, enabled=False):
            gh = F.conv2d(h, w_g_c, padding=padding)
            rh = k.gru_reset_fwd(g_x, gh, h)
            nh = F.conv2d(rh, w_n_c, padding=padding)
            h_new = k.gru_update_fwd(g_x, gh, n_x, nh, h)
        ctx.save_for_backward(g_x, gh, n_x, nh, h, w_g_c, w_n_c)
        ctx.padding, ctx.backend = padding, backend
        ctx.w_dtypes = (w_g.dtype, w_n.dtype)
        return h_new

    @staticmethod
    @once_differentiable
    def backward(ctx, d_hnew):
        g_x, gh, n_x, nh, h, w_g_c, w_n_c = ctx.saved_tensors
        k, pad = _kernels(ctx.backend), ctx.padding
        with torch.autocast(h.device.type, enabled=False):
            d_hnew = _mergeable(d_hnew.to(h.dtype))
            d_g = torch.empty_like(gh)
            d_n, d_h = k.gru_update_bwd(d_hnew, g_x, gh, n_x, nh, h, d_g)
            rh = k.gru_reset_fwd(g_x, gh, h)  # recomputed, not saved
            d_rh, d_wn = _conv_bwd(d_n, rh, w_n_c, pad, True)
            k.gru_reset_bwd(_mergeable(d_rh), g_x, gh, h, d_g, d_h)
            d_h2, d_wg = _conv_bwd(d_g, h, w_g_c, pad, ctx.needs_input_grad[2])
            if d_h2 is not None:
                d_h = d_h + d_h2
        return (d_g, d_n, d_h, d_wg.to(ctx.w_dtypes[0]), d_wn.to(ctx.w_dtypes[1]),
                None, None, None, None)


def _stack_time(frames: list[torch.Tensor], channels_last: bool) -> torch.Tensor:
    """T tensors (N, C, H, W) -> (N, T, C, H, W), stored (N, T, H, W, C) when channels_last
    (stacking the (N, H, W, C) views writes that order in one copy)."""
    if not channels_last:
        return torch.stack(frames, dim=1)
    return torch.stack([f.permute(0, 2, 3, 1) for f in frames], dim=1).permute(0, 1, 4, 2, 3)


def _fold(video: torch.Tensor) -> torch.Tensor:
    """(N, T, C, H, W) -> (N*T, C, H, W): a view for contiguous and channels-last videos."""
    return video.reshape(-1, *video.shape[2:])


class _FusedSequence(torch.autograd.Function):
    """A whole ConvGRU sequence on a fused backend.

    Forward: per step conv(h), reset kernel, conv(r*h), update kernel (as _FusedCell).
    Backward, newest step first: update_bwd -> input-grad conv (w_n) -> reset_bwd ->
    input-grad conv (w_g); the weight gradients of the recurrent convs are then ONE
    batched conv backward each over all N*T (h_{t-1}, d_g_t) and (r*h_t, d_n_t) pairs,
    instead of T small ones (T times fewer calls, and a fp32 cast per weight instead of
    per step). The gradients of g_x and n_x are the stacked d_g_t and d_n_t.
    Saved: the output (which holds every h_t), g_h_t and n_h_t; r*h is recomputed.
    """

    @staticmethod
    def forward(ctx, xg, xn, h0, w_g, w_n, w_g_c, w_n_c, padding, backend, channels_last):
        k = _kernels(backend)
        gxs, nxs = xg.unbind(1), xn.unbind(1)
        hs, ghs, nhs = [], [], []
        h = h0
        with torch.autocast(h0.device.type, enabled=False):
            for t in range(xg.shape[1]):
                gh = F.conv2d(h, w_g_c, padding=padding)
                rh = k.gru_reset_fwd(gxs[t], gh, h)
                nh = F.conv2d(rh, w_n_c, padding=padding)
                h = k.gru_update_fwd(gxs[t], gh, nxs[t], nh, h)
                hs.append(h)
                ghs.append(gh)
                nhs.append(nh)
            out = _stack_time(hs, channels_last)
        ctx.save_for_backward(xg, xn, h0, out, w_g_c, w_n_c, *ghs, *nhs)
        ctx.padding, ctx.backend, ctx.cl = padding, backend, channels_last
        ctx.w_dtypes = (w_g.dtype, w_n.dtype)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out):
        xg, xn, h0, out, w_g_c, w_n_c, *rest = ctx.saved_tensors
        t_len = xg.shape[1]
        ghs, nhs = rest[:t_len], rest[t_len:]
        k, pad, cl = _kernels(ctx.backend), ctx.padding, ctx.cl
        gxs, nxs, outs = xg.unbind(1), xn.unbind(1), out.unbind(1)
        d_outs = d_out.to(out.dtype).unbind(1)
        d_gs, d_ns, rhs = [None] * t_len, [None] * t_len, [None] * t_len
        carry = None  # d loss / d h_t through step t + 1
        with torch.autocast(h0.device.type, enabled=False):
            for t in reversed(range(t_len)):
                h_prev = h0 if t == 0 else outs[t - 1]
                d_h_t = d_outs[t] if carry is None else d_outs[t] + carry
                d_g = torch.empty_like(ghs[t])
                d_n, d_h = k.gru_update_bwd(_mergeable(d_h_t), gxs[t], ghs[t], nxs[t], nhs[t],
                                            h_prev, d_g)
                rhs[t] = rh = k.gru_reset_fwd(gxs[t], ghs[t], h_prev)
                d_rh = _conv_bwd(d_n, rh, w_n_c, pad, need_weight=False)[0]
                k.gru_reset_bwd(_mergeable(d_rh), gxs[t], ghs[t], h_prev, d_g, d_h)
                if t > 0 or ctx.needs_input_grad[2]:
                    d_h = d_h + _conv_bwd(d_g, h_prev, w_g_c, pad, need_weight=False)[0]
                d_gs[t], d_ns[t], carry = d_g, d_n, d_h
            d_g_all, d_n_all = _stack_time(d_gs, cl), _stack_time(d_ns, cl)
            h_prev_all = _stack_time([h0, *outs[:-1]], cl)
            d_wg = _conv_bwd(_fold(d_g_all), _fold(h_prev_all), w_g_c, pad, need_input=False)[1]
            d_wn = _conv_bwd(_fold(d_n_all), _fold(_stack_time(rhs, cl)), w_n_c, pad,
                             need_input=False)[1]
        d_h0 = carry if ctx.needs_input_grad[2] else None
        return (d_g_all, d_n_all, d_h0, d_wg.to(ctx.w_dtypes[0]), d_wn.to(ctx.w_dtypes[1]),
                None, None, None, None, None)


def gru_sequence(xg: torch.Tensor, xn: torch.Tensor, h0: torch.Tensor, w_g: torch.Tensor,
                 w_n: torch.Tensor, padding: int, backend: str | None = None,
                 w_g_c: torch.Tensor | None = None, w_n_c: torch.Tensor | None = None,
                 channels_last: bool = False) -> torch.Tensor:
    """Every step of a ConvGRU: xg (N, T, 2C, H, W), xn (N, T, C, H, W) the input halves of
    the two convs, h0 (N, C, H, W) -> (N, T, C, H, W) hidden states, stored (N, T, H, W, C)
    when channels_last. Same backends and arguments as `gru_cell`; the reference runs
    `gru_cell_reference` step by step."""
    n, t = xg.shape[:2]
    if xg.dim() != 5 or xn.shape[:2] != (n, t):
        raise ValueError(f"gru_sequence: expected xg (N, T, 2C, H, W) and xn (N, T, C, H, W), "
                         f"got {tuple(xg.shape)} and {tuple(xn.shape)}")
    impl = resolve_backend("gru_cell", h0.device, backend)
    if impl == "reference" or t == 0:
        gxs, nxs, hs, h = xg.unbind(1), xn.unbind(1), [], h0
        for step in range(t):
            h = gru_cell(gxs[step], nxs[step], h, w_g, w_n, padding, "reference")
            hs.append(h)
        return _stack_time(hs, channels_last)
    _check_cell(xg[:, 0], xn[:, 0], h0, w_g, w_n)
    if w_g_c is None:
        w_g_c = w_g.detach().to(h0.dtype)
    if w_n_c is None:
        w_n_c = w_n.detach().to(h0.dtype)
    return _FusedSequence.apply(xg, xn, _mergeable(h0), w_g, w_n, w_g_c, w_n_c, padding, impl,
                                channels_last)


def gru_cell(g_x: torch.Tensor, n_x: torch.Tensor, h: torch.Tensor, w_g: torch.Tensor,
             w_n: torch.Tensor, padding: int, backend: str | None = None,
             w_g_c: torch.Tensor | None = None, w_n_c: torch.Tensor | None = None
             ) -> torch.Tensor:
    """h_new of one ConvGRU step. g_x (N, 2C, H, W), n_x and h (N, C, H, W): one dtype and
    device; w_g (2C, C, k, k), w_n (C, C, k, k); `padding` keeps H, W.

    backend: None (the global choice, see cvg_fast.ops.backends), "auto", "reference",
    "cpp", "cuda" or "triton". w_g_c / w_n_c: the weights already cast to h's dtype
    (detached), to cast once per sequence instead of once per step.
    """
    _check_cell(g_x, n_x, h, w_g, w_n)
    impl = resolve_backend("gru_cell", h.device, backend)
    if impl == "reference":
        return gru_cell_reference(g_x, n_x, h, w_g, w_n, padding)
    if w_g_c is None:
        w_g_c = w_g.detach().to(h.dtype)
    if w_n_c is None:
        w_n_c = w_n.detach().to(h.dtype)
    return _FusedCell.apply(_mergeable(g_x), _mergeable(n_x), _mergeable(h), w_g, w_n,
                            w_g_c, w_n_c, padding, impl)


def _math_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _check_cell(g_x, n_x, h, w_g, w_n) -> None:
    """One-line errors for operands that do not make one ConvGRU step."""
    n, c = h.shape[:2]
    if h.dim() != 4 or g_x.shape != (n, 2 * c, *h.shape[2:]) or n_x.shape != h.shape:
        raise ValueError(f"gru_cell: expected g_x (N, 2C, H, W) and n_x, h (N, C, H, W); got "
                         f"g_x {tuple(g_x.shape)}, n_x {tuple(n_x.shape)}, h {tuple(h.shape)}")
    if w_g.shape[:2] != (2 * c, c) or w_n.shape[:2] != (c, c):
        raise ValueError(f"gru_cell: weights must be (2C, C, k, k) and (C, C, k, k) for C={c}; "
                         f"got {tuple(w_g.shape)} and {tuple(w_n.shape)}")
    for name, t in (("g_x", g_x), ("n_x", n_x)):
        if t.dtype != h.dtype or t.device != h.device:
            raise ValueError(f"gru_cell: {name} is {t.dtype} on {t.device} but h is {h.dtype} "
                             f"on {h.device}")


class TorchPointwise:
    """The four pointwise kernels in plain torch (fp32 math, fp64 for double): the contract
    every backend's kernels meet (csrc/gru_cell.h), used to test the fused step's
    schedule by itself. d_g and d_h are written in place, as the kernels do."""

    @staticmethod
    def _gates(g_x, g_h):
        c, m = g_x.shape[1] // 2, _math_dtype(g_x)
        g = g_x.to(m) + g_h.to(m)
        return torch.sigmoid(g[:, :c]), torch.sigmoid(g[:, c:])

    @staticmethod
    def gru_reset_fwd(g_x, g_h, h):
        r, _ = TorchPointwise._gates(g_x, g_h)
        return (r * h.to(r.dtype)).to(h.dtype)

    @staticmethod
    def gru_update_fwd(g_x, g_h, n_x, n_h, h):
        _, z = TorchPointwise._gates(g_x, g_h)
        m = z.dtype
        n, hf = torch.tanh(n_x.to(m) + n_h.to(m)), h.to(m)
        return (hf + z * (n - hf)).to(h.dtype)

    @staticmethod
    def gru_update_bwd(d_hnew, g_x, g_h, n_x, n_h, h, d_g):
        c = h.shape[1]
        _, z = TorchPointwise._gates(g_x, g_h)
        m = z.dtype
        n, hf, d = torch.tanh(n_x.to(m) + n_h.to(m)), h.to(m), d_hnew.to(m)
        d_g[:, c:] = d * (n - hf) * z * (1 - z)
        return (d * z * (1 - n * n)).to(h.dtype), (d * (1 - z)).to(h.dtype)

    @staticmethod
    def gru_reset_bwd(d_rh, g_x, g_h, h, d_g, d_h):
        c = h.shape[1]
        r, _ = TorchPointwise._gates(g_x, g_h)
        d = d_rh.to(r.dtype)
        d_g[:, :c] = d * h.to(r.dtype) * r * (1 - r)
        d_h.copy_(d_h.to(r.dtype) + d * r)
