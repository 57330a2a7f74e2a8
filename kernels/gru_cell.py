"""The ConvGRU cell's two pointwise stages in Triton, forward and backward.

One time step (C = hidden channels, every tensor 4D (N, ., H, W)):

    g = g_x + g_h  (N, 2C, H, W);  r = sigmoid(g[:, :C]);  z = sigmoid(g[:, C:])
    rh = r * h                        <- gru_reset_fwd, the candidate conv's input
    n = tanh(n_x + n_h);  h' = h + z * (n - h)            <- gru_update_fwd
    backward: gru_update_bwd gives d_g[:, C:] (in place), d_n = d/d(n_x + n_h) and
    the direct d_h = d_h' * (1 - z); gru_reset_bwd gives d_g[:, :C] (in place) and
    accumulates d_h += d_rh * r.  r, z, n are recomputed: nothing but inputs is saved.

Layouts: each operand is indexed as (n, c, s), s = y * W + x, with its own three
strides (n stride, c stride, s stride), so time slices x[:, t] of (N, T, 2C, H, W)
tensors, channel halves and channels_last tensors are read in place. This needs H and
W to merge (stride(2) == W * stride(3)); an operand that does not gets a contiguous
copy (written back afterwards for the in-place d_g / d_h). The gate halves are not
passed separately: the kernels read g[:, C:] at C * (c stride) past g[:, :C].
Outputs are allocated like h (torch.empty_like: h's strides if h is dense, else the
memory format h suggests). The 1D program id walks N*C*S elements in the order of the
output's layout (unit stride innermost), so stores and h's loads coalesce.

Math as in kernels/gru_blend.py and csrc/gru_blend_cpu.cpp: 1 - z is sigmoid(-pre)
and 1 - n^2 is 4e/(1+e)^2 with e = exp(-2|pre|) (the textbook forms cancel near
saturation). Loads are cast to fp32 at once (fp64 for double inputs), stores cast
back: bf16 arithmetic is wrong in the interpreter and tl.exp rejects 16-bit floats.
This module imports without Triton: check `HAS_TRITON`.
"""

from __future__ import annotations

import torch

from .gru_blend import GPU_WARPS, HAS_TRITON, INTERPRETED, _acc_dtype, _launch_config

if HAS_TRITON:
    import triton
    import triton.language as tl

    from .gru_blend import _tanh_sech2

__all__ = ["HAS_TRITON", "INTERPRETED", "gru_reset_fwd", "gru_update_fwd", "gru_update_bwd",
           "gru_reset_bwd"]

_FLOATS = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


# ---- kernels ---------------------------------------------------------------------------------
# Every pointer p comes with (p_a, p_b, p_c): its strides along the three iteration axes
# (the output's (n, c, s) axes sorted outer to inner); D1, D2 are the sizes of the inner two.

if HAS_TRITON:

    @triton.jit
    def _index(BLOCK: tl.constexpr, numel, D1, D2):
        """(i0, i1, i2, mask): this program's BLOCK elements as outer/middle/inner indices."""
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        i2 = offs % D2
        rest = offs // D2
        return rest // D1, rest % D1, i2, offs < numel

    @triton.jit
    def gru_reset_fwd_kernel(gx, gx_a, gx_b, gx_c, gh, gh_a, gh_b, gh_c, h, h_a, h_b, h_c,
                             rh, rh_a, rh_b, rh_c, numel, D1, D2,
                             BLOCK: tl.constexpr, ACC: tl.constexpr):
        i0, i1, i2, m = _index(BLOCK, numel, D1, D2)
        g = (tl.load(gx + i0 * gx_a + i1 * gx_b + i2 * gx_c, mask=m).to(ACC)
             + tl.load(gh + i0 * gh_a + i1 * gh_b + i2 * gh_c, mask=m).to(ACC))
        hv = tl.load(h + i0 * h_a + i1 * h_b + i2 * h_c, mask=m).to(ACC)
        out = tl.sigmoid(g) * hv
        tl.store(rh + i0 * rh_a + i1 * rh_b + i2 * rh_c, out.to(rh.dtype.element_ty), mask=m)

    @triton.jit
    def gru_update_fwd_kernel(gx, gx_a, gx_b, gx_c, gx_z, gh, gh_a, gh_b, gh_c, gh_z,
                              nx, nx_a, nx_b, nx_c, nh, nh_a, nh_b, nh_c, h, h_a, h_b, h_c,
                              hn, hn_a, hn_b, hn_c, numel, D1, D2,
                              BLOCK: tl.constexpr, ACC: tl.constexpr):
        i0, i1, i2, m = _index(BLOCK, numel, D1, D2)
        z = tl.sigmoid(tl.load(gx + gx_z + i0 * gx_a + i1 * gx_b + i2 * gx_c, mask=m).to(ACC)
                       + tl.load(gh + gh_z + i0 * gh_a + i1 * gh_b + i2 * gh_c, mask=m).to(ACC))
        n_pre = (tl.load(nx + i0 * nx_a + i1 * nx_b + i2 * nx_c, mask=m).to(ACC)
                 + tl.load(nh + i0 * nh_a + i1 * nh_b + i2 * nh_c, mask=m).to(ACC))
        n, _ = _tanh_sech2(n_pre, ACC)
        hv = tl.load(h + i0 * h_a + i1 * h_b + i2 * h_c, mask=m).to(ACC)
        out = hv + z * (n - hv)
        tl.store(hn + i0 * hn_a + i1 * hn_b + i2 * hn_c, out.to(hn.dtype.element_ty), mask=m)

    @triton.jit
    def gru_update_bwd_kernel(dy, dy_a, dy_b, dy_c, gx, gx_a, gx_b, gx_c, gx_z,
                              gh, gh_a, gh_b, gh_c, gh_z, nx, nx_a, nx_b, nx_c,
                              nh, nh_a, nh_b, nh_c, h, h_a, h_b, h_c,
                              dg, dg_a, dg_b, dg_c, dg_z, dn, dn_a, dn_b, dn_c,
                              dh, dh_a, dh_b, dh_c, numel, D1, D2,
                              BLOCK: tl.constexpr, ACC: tl.constexpr):
        i0, i1, i2, m = _index(BLOCK, numel, D1, D2)
        d = tl.load(dy + i0 * dy_a + i1 * dy_b + i2 * dy_c, mask=m).to(ACC)
        z_pre = (tl.load(gx + gx_z + i0 * gx_a + i1 * gx_b + i2 * gx_c, mask=m).to(ACC)
                 + tl.load(gh + gh_z + i0 * gh_a + i1 * gh_b + i2 * gh_c, mask=m).to(ACC))
        z, one_minus_z = tl.sigmoid(z_pre), tl.sigmoid(-z_pre)
        n_pre = (tl.load(nx + i0 * nx_a + i1 * nx_b + i2 * nx_c, mask=m).to(ACC)
                 + tl.load(nh + i0 * nh_a + i1 * nh_b + i2 * nh_c, mask=m).to(ACC))
        n, sech2 = _tanh_sech2(n_pre, ACC)
        hv = tl.load(h + i0 * h_a + i1 * h_b + i2 * h_c, mask=m).to(ACC)
        d_one_minus_z = d * one_minus_z
        tl.store(dg + dg_z + i0 * dg_a + i1 * dg_b + i2 * dg_c,
                 (d_one_minus_z * z * (n - hv)).to(dg.dtype.element_ty), mask=m)
        tl.store(dn + i0 * dn_a + i1 * dn_b + i2 * dn_c,
                 (d * z * sech2).to(dn.dtype.element_ty), mask=m)
        tl.store(dh + i0 * dh_a + i1 * dh_b + i2 * dh_c,
                 d_one_minus_z.to(dh.dtype.element_ty), mask=m)

    @triton.jit
    def gru_reset_bwd_kernel(drh, drh_a, drh_b, drh_c, gx, gx_a, gx_b, gx_c,
                             gh, gh_a, gh_b, gh_c, h, h_a, h_b, h_c, dg, dg_a, dg_b, dg_c,
                             dh, dh_a, dh_b, dh_c, numel, D1, D2,
                             BLOCK: tl.constexpr, ACC: tl.constexpr):
        i0, i1, i2, m = _index(BLOCK, numel, D1, D2)
        d = tl.load(drh + i0 * drh_a + i1 * drh_b + i2 * drh_c, mask=m).to(ACC)
        r_pre = (tl.load(gx + i0 * gx_a + i1 * gx_b + i2 * gx_c, mask=m).to(ACC)
                 + tl.load(gh + i0 * gh_a + i1 * gh_b + i2 * gh_c, mask=m).to(ACC))
        r, one_minus_r = tl.sigmoid(r_pre), tl.sigmoid(-r_pre)
        hv = tl.load(h + i0 * h_a + i1 * h_b + i2 * h_c, mask=m).to(ACC)
        tl.store(dg + i0 * dg_a + i1 * dg_b + i2 * dg_c,
                 (d * hv * r * one_minus_r).to(dg.dtype.element_ty), mask=m)
        dh_ptrs = dh + i0 * dh_a + i1 * dh_b + i2 * dh_c
        acc = tl.load(dh_ptrs, mask=m).to(ACC) + d * r
        tl.store(dh_ptrs, acc.to(dh.dtype.element_ty), mask=m)


# ---- launchers -------------------------------------------------------------------------------


def _nc_s_strides(t: torch.Tensor) -> tuple[int, int, int] | None:
    """(n, c, s) strides of a 4D tensor whose H and W merge into s = y * W + x, else None."""
    sn, sc, sy, sx = t.stride()
    _, _, hh, ww = t.shape
    if hh == 1:
        return sn, sc, sx
    if ww == 1:
        return sn, sc, sy
    return (sn, sc, sx) if sy == ww * sx else None


def _mergeable(t: torch.Tensor) -> torch.Tensor:
    """t itself if H and W merge, else a contiguous copy (read-only operands)."""
    return t if _nc_s_strides(t) is not None else t.contiguous()


def _check(what: str, ts: dict[str, torch.Tensor], h: torch.Tensor, C: int) -> None:
    """One-line ValueErrors for rank, shape, dtype and device mismatches."""
    if h.dim() != 4:
        raise ValueError(f"{what}: h must be 4D (N, C, H, W), got shape {tuple(h.shape)}")
    if h.dtype not in _FLOATS:
        raise ValueError(f"{what}: dtype {h.dtype} not supported "
                         "(float32/bfloat16/float16/float64)")
    n, _, hh, ww = h.shape
    for name, t in ts.items():
        want = (n, 2 * C if name in ("g_x", "g_h", "d_g") else C, hh, ww)
        if tuple(t.shape) != want:
            raise ValueError(f"{what}: {name} has shape {tuple(t.shape)} but must be {want} "
                             f"(h has {tuple(h.shape)})")
        if t.dtype != h.dtype:
            raise ValueError(f"{what}: {name} is {t.dtype} but h is {h.dtype}")
        if t.device != h.device:
            raise ValueError(f"{what}: {name} is on {t.device} but h is on {h.device}")
    if h.device.type != "cuda" and not INTERPRETED:
        raise ValueError(f"{what}: Triton kernels need CUDA tensors (CPU only under "
                         f"TRITON_INTERPRET=1), got {h.device}")


def _order(out: torch.Tensor) -> tuple[int, int, int]:
    """The (n, c, s) axes sorted outer to inner by the output's strides (unit stride last)."""
    strides = _nc_s_strides(out)
    sizes = (out.shape[0], out.shape[1], out.shape[2] * out.shape[3])
    # size-1 axes go outermost: their stride is arbitrary and never stepped over
    return tuple(sorted(range(3), key=lambda a: (sizes[a] != 1, -strides[a], a)))


def _args(t: torch.Tensor, order) -> list:
    s = _nc_s_strides(t)
    return [t, s[order[0]], s[order[1]], s[order[2]]]


def _launch(kernel, out: torch.Tensor, operands: list, block: int | None) -> None:
    """Runs `kernel` over out's N*C*S elements; operands: tensors (-> ptr + 3 strides) and ints."""
    sizes = (out.shape[0], out.shape[1], out.shape[2] * out.shape[3])
    order = _order(out)
    numel = out.numel()
    if not numel:
        return
    args = []
    for op in operands:
        args += _args(op, order) if isinstance(op, torch.Tensor) else [op]
    block, grid = _launch_config(numel, block)
    kernel[(grid,)](*args, numel, sizes[order[1]], sizes[order[2]], BLOCK=block,
                    ACC=_acc_dtype(out.dtype), num_warps=GPU_WARPS)


def _empty_like_h(h: torch.Tensor) -> torch.Tensor:
    """An output allocated like h (h's strides if dense, else its suggested memory format)."""
    out = torch.empty_like(h)
    if _nc_s_strides(out) is not None:
        return out
    return torch.empty_like(h, memory_format=torch.contiguous_format)


def gru_reset_fwd(g_x: torch.Tensor, g_h: torch.Tensor, h: torch.Tensor,
                  block: int | None = None) -> torch.Tensor:
    """rh = sigmoid(g_x[:, :C] + g_h[:, :C]) * h: (N, C, H, W) from (N, 2C, H, W) gates."""
    C = h.shape[1] if h.dim() == 4 else 0
    _check("gru_reset_fwd", {"g_x": g_x, "g_h": g_h}, h, C)
    g_x, g_h, h = (_mergeable(t) for t in (g_x, g_h, h))
    rh = _empty_like_h(h)
    _launch(gru_reset_fwd_kernel, rh, [g_x, g_h, h, rh], block)
    return rh


def gru_update_fwd(g_x: torch.Tensor, g_h: torch.Tensor, n_x: torch.Tensor, n_h: torch.Tensor,
                   h: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """h' = h + z * (tanh(n_x + n_h) - h), z = sigmoid(g_x[:, C:] + g_h[:, C:])."""
    C = h.shape[1] if h.dim() == 4 else 0
    _check("gru_update_fwd", {"g_x": g_x, "g_h": g_h, "n_x": n_x, "n_h": n_h}, h, C)
    g_x, g_h, n_x, n_h, h = (_mergeable(t) for t in (g_x, g_h, n_x, n_h, h))
    h_new = _empty_like_h(h)
    _launch(gru_update_fwd_kernel, h_new,
            [g_x, C * g_x.stride(1), g_h, C * g_h.stride(1), n_x, n_h, h, h_new], block)
    return h_new


def _inplace(t: torch.Tensor) -> torch.Tensor:
    """t if the kernels can write it in place, else a contiguous copy to be copied back."""
    return t if _nc_s_strides(t) is not None else t.contiguous()


def gru_update_bwd(d_hnew: torch.Tensor, g_x: torch.Tensor, g_h: torch.Tensor, n_x: torch.Tensor,
                   n_h: torch.Tensor, h: torch.Tensor, d_g: torch.Tensor,
                   block: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Writes d_g[:, C:] (the z pre-activation gradient) in place; returns (d_n, d_h).

    d_n = d_hnew * z * (1 - n^2) is the gradient of n_x + n_h; d_h = d_hnew * (1 - z) is
    only the direct part (gru_reset_bwd adds the path through r * h). d_g[:, :C] is untouched.
    """
    C = h.shape[1] if h.dim() == 4 else 0
    _check("gru_update_bwd", {"d_hnew": d_hnew, "g_x": g_x, "g_h": g_h, "n_x": n_x,
                              "n_h": n_h, "d_g": d_g}, h, C)
    d_hnew, g_x, g_h, n_x, n_h, h = (_mergeable(t) for t in (d_hnew, g_x, g_h, n_x, n_h, h))
    dg = _inplace(d_g)
    d_n, d_h = _empty_like_h(h), _empty_like_h(h)
    _launch(gru_update_bwd_kernel, d_h,
            [d_hnew, g_x, C * g_x.stride(1), g_h, C * g_h.stride(1), n_x, n_h, h,
             dg, C * dg.stride(1), d_n, d_h], block)
    if dg is not d_g:
        d_g[:, C:].copy_(dg[:, C:])
    return d_n, d_h


def gru_reset_bwd(d_rh: torch.Tensor, g_x: torch.Tensor, g_h: torch.Tensor, h: torch.Tensor,
                  d_g: torch.Tensor, d_h: torch.Tensor, block: int | None = None) -> None:
    """Writes d_g[:, :C] = d_rh * h * r * (1 - r) in place and accumulates d_h += d_rh * r."""
    C = h.shape[1] if h.dim() == 4 else 0
    _check("gru_reset_bwd", {"d_rh": d_rh, "g_x": g_x, "g_h": g_h, "d_g": d_g, "d_h": d_h}, h, C)
    d_rh, g_x, g_h, h = (_mergeable(t) for t in (d_rh, g_x, g_h, h))
    dg, dh = _inplace(d_g), _inplace(d_h)
    _launch(gru_reset_bwd_kernel, dh, [d_rh, g_x, g_h, h, dg, dh], block)
    if dg is not d_g:
        d_g[:, :C].copy_(dg[:, :C])
    if dh is not d_h:
        d_h.copy_(dh)
