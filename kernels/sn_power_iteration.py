"""Spectral-norm power iteration in Triton: one fused op per layer and training step.

    sn_power_iteration(w, u, v, eps, update) -> sigma (0-dim float32)
    w: (O, I) float32 (any strides; a non-unit column stride is copied to contiguous),
    u: (O,), v: (I,) contiguous float32. With update, one power iteration in place, as
    cvg_fast/nn/spectral_norm.py does it: u <- normalize(W v), v <- normalize(W^T u),
    normalize(a) = a / max(||a||, eps). Returns sigma = u . (W v) with the updated u, v.

Same scheme as csrc/sn_power_iteration_{cpu.cpp,cuda.cu} (see sn_power_iteration.h):
W is read once. A program walks its rows in tiles of BLOCK_O rows: t = W v for the
tile (stored into u), then the same tile, still in L1/L2, is added into the program's
partial s_p += sum_o t_o W[o, :] (a row of a scratch buffer). Finalize: n_t = max(||t||,
eps), u = t / n_t, W^T u = (sum_p s_p) / n_t, v = normalize(W^T u), and sigma =
(W^T u) . v, equal to u . (W v) in real arithmetic and free of cancellation (terms
s_j^2 / n_s >= 0), so no third pass over W. Without update, sigma = sum_o u_o (W v)_o.
Norms and sigma are accumulated in float64, dots and s in float32; every sum has a
fixed order for a given shape.

Launches: O * I <= FUSED_MAX_ELEMS (1M): ONE program does the rows and the finalize.
Larger W: TWO launches: the rows kernel on up to MAX_PROGRAMS programs (row ranges fixed
by the shape) writing partials, then the finalize kernel on one program. A single
program would read a large W (19 MB at 1024 x 4608) at one SM's bandwidth; Triton has
no grid-wide barrier to finalize in the same launch.

Under TRITON_INTERPRET=1 the kernels run on CPU tensors with large tiles and few
programs (~3 ms per program instance). This module imports without Triton: check
`HAS_TRITON`.
"""

from __future__ import annotations

import torch

from .gru_blend import HAS_TRITON, INTERPRETED

if HAS_TRITON:
    import triton
    import triton.language as tl

__all__ = ["HAS_TRITON", "INTERPRETED", "sn_power_iteration"]

FUSED_MAX_ELEMS = 1 << 20
if INTERPRETED:  # few, large program instances: numpy does the work per instance
    BLOCK_O, BLOCK_I, BLOCK_F, MAX_PROGRAMS, NUM_WARPS = 64, 1024, 8192, 4, 4
else:
    BLOCK_O, BLOCK_I, BLOCK_F, MAX_PROGRAMS, NUM_WARPS = 16, 256, 1024, 32, 4


if HAS_TRITON:

    @triton.jit
    def _rows_phase(w, ldw, u, v, s_row, r0, r1, I, UPDATE: tl.constexpr,
                    BLOCK_O: tl.constexpr, BLOCK_I: tl.constexpr):
        """Rows [r0, r1): t = W v into u and s_row[:] = sum_o t_o W[o, :] (UPDATE), else
        returns sum_o u_o t_o (float64)."""
        sig = tl.zeros([BLOCK_O], dtype=tl.float64)
        for r in range(r0, r1, BLOCK_O):
            rows = r + tl.arange(0, BLOCK_O)
            rmask = rows < r1
            row_ptr = w + rows.to(tl.int64)[:, None] * ldw
            t = tl.zeros([BLOCK_O], dtype=tl.float32)
            for c in range(0, I, BLOCK_I):
                cols = c + tl.arange(0, BLOCK_I)
                cmask = cols < I
                wt = tl.load(row_ptr + cols[None, :], mask=rmask[:, None] & cmask[None, :],
                             other=0.0)
                vt = tl.load(v + cols, mask=cmask, other=0.0)
                t += tl.sum(wt * vt[None, :], axis=1)
            if UPDATE:
                tl.store(u + rows, t, mask=rmask)
                not_first = r > r0
                for c in range(0, I, BLOCK_I):
                    cols = c + tl.arange(0, BLOCK_I)
                    cmask = cols < I
                    wt = tl.load(row_ptr + cols[None, :], mask=rmask[:, None] & cmask[None, :],
                                 other=0.0)
                    prev = tl.load(s_row + cols, mask=cmask & not_first, other=0.0)
                    tl.store(s_row + cols, prev + tl.sum(wt * t[:, None], axis=0), mask=cmask)
                tl.debug_barrier()  # s_row is read back by the next tile, u by the finalize
            else:
                uu = tl.load(u + rows, mask=rmask, other=0.0)
                sig += uu.to(tl.float64) * t.to(tl.float64)
        return tl.sum(sig, axis=0)

    @triton.jit
    def _finalize_update(u, v, s_part, sigma, O, I, NB, eps, BLOCK: tl.constexpr):
        """u = t / n_t; s = (sum_p s_p) / n_t; v = s / n_s; sigma = s . v."""
        tt = tl.zeros([BLOCK], dtype=tl.float64)
        for o in range(0, O, BLOCK):
            offs = o + tl.arange(0, BLOCK)
            t = tl.load(u + offs, mask=offs < O, other=0.0).to(tl.float64)
            tt += t * t
        n_t = tl.maximum(tl.sqrt(tl.sum(tt, axis=0)).to(tl.float32), eps)
        for o in range(0, O, BLOCK):
            offs = o + tl.arange(0, BLOCK)
            m = offs < O
            tl.store(u + offs, tl.load(u + offs, mask=m, other=0.0) / n_t, mask=m)
        ss = tl.zeros([BLOCK], dtype=tl.float64)
        for c in range(0, I, BLOCK):
            offs = c + tl.arange(0, BLOCK)
            m = offs < I
            s = tl.zeros([BLOCK], dtype=tl.float32)
            for p in range(0, NB):
                s += tl.load(s_part + p * I + offs, mask=m, other=0.0)
            s = s / n_t
            tl.store(v + offs, s, mask=m)
            ss += s.to(tl.float64) * s.to(tl.float64)
        n_s = tl.maximum(tl.sqrt(tl.sum(ss, axis=0)).to(tl.float32), eps)
        tl.debug_barrier()  # v (holding s) is read back below
        sg = tl.zeros([BLOCK], dtype=tl.float64)
        for c in range(0, I, BLOCK):
            offs = c + tl.arange(0, BLOCK)
            m = offs < I
            s = tl.load(v + offs, mask=m, other=0.0)
            vv = s / n_s
            tl.store(v + offs, vv, mask=m)
            sg += s.to(tl.float64) * vv.to(tl.float64)
        tl.store(sigma, tl.sum(sg, axis=0).to(tl.float32))

    @triton.jit
    def sn_rows_kernel(w, ldw, u, v, s_part, sig_part, sigma, O, I, ROWS, eps,
                       UPDATE: tl.constexpr, FUSED: tl.constexpr, BLOCK_O: tl.constexpr,
                       BLOCK_I: tl.constexpr, BLOCK_F: tl.constexpr):
        pid = tl.program_id(0)
        r0 = pid * ROWS
        r1 = tl.minimum(r0 + ROWS, O)
        sig = _rows_phase(w, ldw, u, v, s_part + pid.to(tl.int64) * I, r0, r1, I, UPDATE,
                          BLOCK_O, BLOCK_I)
        if FUSED:
            if UPDATE:
                _finalize_update(u, v, s_part, sigma, O, I, 1, eps, BLOCK_F)
            else:
                tl.store(sigma, sig.to(tl.float32))
        elif not UPDATE:
            tl.store(sig_part + pid, sig)

    @triton.jit
    def sn_finalize_kernel(u, v, s_part, sig_part, sigma, O, I, NB, eps,
                           UPDATE: tl.constexpr, BLOCK_F: tl.constexpr):
        if UPDATE:
            _finalize_update(u, v, s_part, sigma, O, I, NB, eps, BLOCK_F)
        else:
            acc = tl.zeros([BLOCK_F], dtype=tl.float64)
            for p in range(0, NB, BLOCK_F):
                offs = p + tl.arange(0, BLOCK_F)
                acc += tl.load(sig_part + offs, mask=offs < NB, other=0.0)
            tl.store(sigma, tl.sum(acc, axis=0).to(tl.float32))


def _check(w: torch.Tensor, u: torch.Tensor, v: torch.Tensor, eps: float) -> None:
    what = "sn_power_iteration"
    if w.dim() != 2:
        raise ValueError(f"{what}: w must be 2D (O, I) (flatten(1) a conv weight), "
                         f"got shape {tuple(w.shape)}")
    for name, t in (("w", w), ("u", u), ("v", v)):
        if t.dtype != torch.float32:
            raise ValueError(f"{what}: {name} must be float32, got {t.dtype}")
        if t.device != w.device:
            raise ValueError(f"{what}: {name} is on {t.device} but w is on {w.device}")
    O, I = w.shape
    for name, t, n in (("u", u, O), ("v", v, I)):
        if tuple(t.shape) != (n,):
            raise ValueError(f"{what}: {name} has shape {tuple(t.shape)} but w is (O, I) = "
                             f"{tuple(w.shape)}: expected ({n},)")
    if not (u.is_contiguous() and v.is_contiguous()):
        raise ValueError(f"{what}: u and v must be contiguous")
    if eps < 0:
        raise ValueError(f"{what}: eps must be >= 0, got {eps}")
    if w.device.type != "cuda" and not INTERPRETED:
        raise ValueError(f"{what}: Triton kernels need CUDA tensors (CPU only under "
                         f"TRITON_INTERPRET=1), got {w.device}")


def sn_power_iteration(w: torch.Tensor, u: torch.Tensor, v: torch.Tensor, eps: float = 1e-12,
                       update: bool = True) -> torch.Tensor:
    """One power iteration on u, v in place (update), then sigma = u . (W v) (0-dim fp32)."""
    _check(w, u, v, eps)
    if w.shape[1] > 1 and w.stride(1) != 1:
        w = w.contiguous()
    O, I = w.shape
    sigma = torch.empty((), dtype=torch.float32, device=w.device)
    if O == 0 or I == 0:  # W v = 0 and W^T u = 0: both normalise to 0, sigma = 0
        if update:
            u.zero_()
            v.zero_()
        return sigma.zero_()
    ldw = w.stride(0) if O > 1 else I
    fused = O * I <= FUSED_MAX_ELEMS
    rows = O if fused else max(triton.cdiv(O, MAX_PROGRAMS), BLOCK_O)
    nb = triton.cdiv(O, rows)
    s_part = torch.empty((nb, I) if update else (1,), dtype=torch.float32, device=w.device)
    sig_part = torch.empty((1,) if update else (nb,), dtype=torch.float64, device=w.device)
    sn_rows_kernel[(nb,)](w, ldw, u, v, s_part, sig_part, sigma, O, I, rows, float(eps),
                          UPDATE=update, FUSED=fused, BLOCK_O=BLOCK_O, BLOCK_I=BLOCK_I,
                          BLOCK_F=BLOCK_F, num_warps=NUM_WARPS)
    if not fused:
        sn_finalize_kernel[(1,)](u, v, s_part, sig_part, sigma, O, I, nb, float(eps),
                                 UPDATE=update, BLOCK_F=BLOCK_F, num_warps=NUM_WARPS)
    return sigma
