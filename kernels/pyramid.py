"""The data pyramid's spatial step f_s, all levels in one Triton launch.

pyramid_down(x, levels, scale, shift, out_dtype) returns `levels` tensors
(B, C, H / 2^k, W / 2^k), k = 1..levels, equal to
    y_0 = x.float() * scale + shift
    y_k = F.interpolate(y_{k-1}, scale_factor=0.5, mode="bilinear", antialias=True)
in fp32, cast to out_dtype at the end. The filter: output i = sum over input j in
[2i-1, 2i+2] of taps [1, 3, 3, 1] / 8, taps outside the plane dropped and the rest
renormalised (borders [3,3,1]/7 and [1,3,3]/7; a 2-wide input gives [3,3]/6),
separable. The normalised fp32 weights (1/8, 3/8, 1/7, 3/7) sum each input row's 4 taps,
then the 4 rows: within a few ulp of F.interpolate's fp32 result.

Single pass (what this module does): one kernel launch, x read once. Each program
owns an output tile of the coarsest level L (TH x TW) of one (b, c) plane. It
computes level k = 1..L over the region that tile depends on: rows
[2^(L-k) (a - 1) + 1, 2^(L-k) (a_end + 1) - 1) clipped to the plane, i.e. its own
2^(L-k)-times-larger tile plus the halo the [1,3,3,1] filter needs at each coarser
level. Level 1 reads x (any strides, any dtype; uint8 loaded and cast to fp32 at
once), level k > 1 reads level k-1 from this program's fp32 scratch (intermediate
levels are never re-read from the rounded out_dtype output), separated by a
barrier (global writes of one program are visible to it after tl.debug_barrier).
Only the program's own tile of each level is stored to the output; the halo is
recomputed by neighbours: level 1 covers ((T + 2) 2^(L-1) - 2)^2 instead of
(T 2^(L-1))^2 points; on a GPU T = 64 / 2^(L-1), so at most ~1.2x for L <= 3.
When interpreted (TRITON_INTERPRET=1, ~3 ms per program instance) the tile is the
whole coarsest plane: one program per (b, c) plane, no halo, big blocks.

The levels live in one flat buffer: output k is a contiguous view of it. Scale and
shift are applied to each x sample before filtering, as the definition says. No
gradient: this is the data path. This module imports without Triton (`HAS_TRITON`).
"""

from __future__ import annotations

import torch

from .gru_blend import GPU_WARPS, HAS_TRITON, INTERPRETED, INTERPRETER_MAX_BLOCK

if HAS_TRITON:
    import triton
    import triton.language as tl

__all__ = ["HAS_TRITON", "INTERPRETED", "pyramid_down"]

_IN_DTYPES = (torch.uint8, torch.bfloat16, torch.float16, torch.float32, torch.float64)
_OUT_DTYPES = (torch.bfloat16, torch.float16, torch.float32, torch.float64)
GPU_BLOCK = 512
GPU_LEVEL1_TILE = 64  # own tile edge at level 1 on a GPU: halo overhead <= ~1.2x for L <= 3


if HAS_TRITON:

    @triton.jit
    def _taps(i, n_out):
        """Normalised weights of input taps 2i-1 .. 2i+2 (fp32); outer taps vanish at borders."""
        first = tl.where(i > 0, 1.0, 0.0)
        last = tl.where(i < n_out - 1, 1.0, 0.0)
        total = 6.0 + first + last
        return first / total, 3.0 / total, 3.0 / total, last / total

    @triton.jit
    def _pick(w0, w1, w2, w3, A: tl.constexpr):
        if A == 0:
            w = w0
        elif A == 1:
            w = w1
        elif A == 2:
            w = w2
        else:
            w = w3
        return w

    @triton.jit
    def pyramid_down_kernel(x, x_sb, x_sc, x_sh, x_sw, C, H, W, out, scratch, scr_per_prog,
                            scale, shift, TH, TW, LEVELS: tl.constexpr, BLOCK: tl.constexpr):
        plane = tl.program_id(0)
        ty = tl.program_id(1)
        tx = tl.program_id(2)
        n_planes = tl.num_programs(0)
        x_plane = x + (plane // C).to(tl.int64) * x_sb + (plane % C).to(tl.int64) * x_sc
        prog = (plane.to(tl.int64) * tl.num_programs(1) + ty) * tl.num_programs(2) + tx
        scr = scratch + prog * scr_per_prog
        lanes = tl.arange(0, BLOCK)
        # this program's tile of the coarsest level: rows [ay, by), cols [ax, bx)
        ay = ty * TH
        ax = tx * TW
        by = ay + TH
        bx = ax + TW
        out_off = n_planes.to(tl.int64) * 0  # offset of level k in the flat output
        src_off = 0  # level k-1 in scratch: offset, first row/col, row length
        src_r0 = 0
        src_c0 = 0
        src_w = 1
        dst_off = 0
        for k in tl.static_range(1, LEVELS + 1):
            f = 1 << (LEVELS - k)
            hk = H >> k
            wk = W >> k
            hp = H >> (k - 1)
            wp = W >> (k - 1)
            # region computed here (own tile + halo), and the own tile stored to the output
            r0 = tl.maximum(f * (ay - 1) + 1, 0)
            r1 = tl.minimum(f * (by + 1) - 1, hk)
            c0 = tl.maximum(f * (ax - 1) + 1, 0)
            c1 = tl.minimum(f * (bx + 1) - 1, wk)
            o_r0 = f * ay
            o_r1 = tl.minimum(f * by, hk)
            o_c0 = f * ax
            o_c1 = tl.minimum(f * bx, wk)
            rw = c1 - c0
            n_el = (r1 - r0) * rw
            out_plane = out + out_off + plane.to(tl.int64) * hk * wk
            for start in range(0, n_el, BLOCK):
                idx = start + lanes
                m = idx < n_el
                r = r0 + idx // rw
                c = c0 + idx % rw
                wr0, wr1, wr2, wr3 = _taps(r, hk)
                wc0, wc1, wc2, wc3 = _taps(c, wk)
                acc = tl.zeros((BLOCK,), tl.float32)
                for a in tl.static_range(4):
                    jr = 2 * r - 1 + a
                    vr = m & (jr >= 0) & (jr < hp)
                    row = tl.zeros((BLOCK,), tl.float32)
                    for b in tl.static_range(4):
                        jc = 2 * c - 1 + b
                        v_ok = vr & (jc >= 0) & (jc < wp)
                        if k == 1:
                            v = tl.load(x_plane + jr * x_sh + jc * x_sw, mask=v_ok, other=0)
                            v = v.to(tl.float32) * scale + shift
                        else:
                            v = tl.load(scr + src_off + (jr - src_r0) * src_w + (jc - src_c0),
                                        mask=v_ok, other=0.0)
                        row += _pick(wc0, wc1, wc2, wc3, b) * tl.where(v_ok, v, 0.0)
                    acc += _pick(wr0, wr1, wr2, wr3, a) * row
                if k < LEVELS:
                    tl.store(scr + dst_off + idx, acc, mask=m)
                own = m & (r >= o_r0) & (r < o_r1) & (c >= o_c0) & (c < o_c1)
                tl.store(out_plane + r * wk + c, acc.to(out.dtype.element_ty), mask=own)
            if k < LEVELS:
                tl.debug_barrier()  # level k's scratch, written by every lane, is read next
            src_off = dst_off
            src_r0 = r0
            src_c0 = c0
            src_w = rw
            dst_off = dst_off + n_el
            out_off = out_off + n_planes.to(tl.int64) * hk * wk


def _halo_extent(tile: int, levels: int, k: int, size_k: int) -> int:
    """Rows (or cols) of level k one program computes for a coarsest-level tile, at most."""
    return min((tile + 2) * (1 << (levels - k)) - 2, size_k)


def pyramid_down(x: torch.Tensor, levels: int, scale: float = 1.0, shift: float = 0.0,
                 out_dtype: torch.dtype = torch.float32, tile: int | None = None,
                 block: int | None = None) -> list[torch.Tensor]:
    """[level 1, ..., level `levels`] of x (B, C, H, W), each (B, C, H/2^k, W/2^k) contiguous.

    x: uint8 / bf16 / fp16 / fp32 / fp64 with any strides (e.g. a (T, H, W, C) uint8 frame
    stack permuted to (T, C, H, W)); H and W divisible by 2^levels. `tile` (the coarsest
    level's tile edge) and `block` (elements per step) override the launch configuration.
    """
    if not isinstance(levels, int) or levels < 1:
        raise ValueError(f"pyramid_down: levels must be an int >= 1, got {levels!r}")
    if x.dim() != 4:
        raise ValueError(f"pyramid_down: x must be 4D (B, C, H, W), got shape {tuple(x.shape)}")
    if x.dtype not in _IN_DTYPES:
        raise ValueError(f"pyramid_down: x dtype {x.dtype} not supported "
                         "(uint8/bf16/fp16/fp32/fp64)")
    if out_dtype not in _OUT_DTYPES:
        raise ValueError(f"pyramid_down: out_dtype {out_dtype} not supported (bf16/fp16/fp32/fp64)")
    B, C, H, W = x.shape
    if H % (1 << levels) or W % (1 << levels):
        raise ValueError(f"pyramid_down: H and W must be divisible by 2**levels = {1 << levels}, "
                         f"got {H}x{W}")
    if x.device.type != "cuda" and not INTERPRETED:
        raise ValueError(f"pyramid_down: Triton kernels need CUDA tensors (CPU only under "
                         f"TRITON_INTERPRET=1), got {x.device}")
    sizes = [(H >> k, W >> k) for k in range(1, levels + 1)]
    flat = torch.empty(B * C * sum(h * w for h, w in sizes), dtype=out_dtype, device=x.device)
    outs, off = [], 0
    for h, w in sizes:
        outs.append(flat[off:off + B * C * h * w].view(B, C, h, w))
        off += B * C * h * w
    if flat.numel() == 0:
        return outs
    hl, wl = sizes[-1]
    if tile is None:  # interpreted: one program per plane; GPU: ~64x64 own tiles at level 1
        tile = max(hl, wl) if INTERPRETED else max(1, GPU_LEVEL1_TILE >> (levels - 1))
    th, tw = min(tile, hl), min(tile, wl)
    scr_per_prog = sum(_halo_extent(th, levels, k, H >> k) * _halo_extent(tw, levels, k, W >> k)
                       for k in range(1, levels))
    grid = (B * C, triton.cdiv(hl, th), triton.cdiv(wl, tw))
    scratch = torch.empty(max(1, grid[0] * grid[1] * grid[2] * scr_per_prog), dtype=torch.float32,
                          device=x.device)
    if block is None:
        biggest = _halo_extent(th, levels, 1, H >> 1) * _halo_extent(tw, levels, 1, W >> 1)
        block = (min(triton.next_power_of_2(biggest), INTERPRETER_MAX_BLOCK) if INTERPRETED
                 else GPU_BLOCK)
    pyramid_down_kernel[grid](x, *x.stride(), C, H, W, flat, scratch, scr_per_prog,
                              float(scale), float(shift), th, tw, LEVELS=levels, BLOCK=block,
                              num_warps=GPU_WARPS)
    return outs
