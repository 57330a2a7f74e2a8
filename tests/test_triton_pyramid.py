"""Triton pyramid_down (kernels/pyramid.py, spec B) against F.interpolate level by level.

Like test_triton_gru_cell.py, the cases run on CPU tensors only under
TRITON_INTERPRET=1, which `test_kernels_in_interpreter` sets in a subprocess
(with a GPU they run on CUDA directly).

Tolerances against the fp32 reference (F.interpolate antialias, level by level):
  fp32 outputs: 1e-6 absolute for values in [-1, 1] (the kernel applies the same
  normalised fp32 weights; only the summation order differs by a few ulp);
  bf16 / fp16 outputs: at most one ulp of the output type from the fp32 reference
  (one rounding; the interpreter truncates instead of rounding to nearest).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import run_in_triton_interpreter
from test_triton_gru_cell import load_kernels

P = load_kernels("pyramid")
ON_GPU = P.HAS_TRITON and torch.cuda.is_available() and not P.INTERPRETED
DEVICE = "cuda" if ON_GPU else "cpu"
needs_kernels = pytest.mark.skipif(
    not (P.INTERPRETED or ON_GPU), reason="runs in test_kernels_in_interpreter's subprocess")


def pyramid_reference(x, levels, scale=1.0, shift=0.0):
    """The spec's definition: fp32 y_0 = x*scale + shift, then antialiased bilinear halvings."""
    y = x.float() * scale + shift
    out = []
    for _ in range(levels):
        y = F.interpolate(y, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
        out.append(y)
    return out


def assert_matches(got, want, out_dtype):
    """got (out_dtype) equals the fp32 reference within 1e-6 (fp32) or one output ulp."""
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want), 1):
        w = w.cpu()
        assert g.dtype == out_dtype and g.shape == w.shape and g.is_contiguous(), (k, g.shape)
        g = g.cpu().double()
        if out_dtype in (torch.float32, torch.float64):
            torch.testing.assert_close(g, w.double(), atol=1e-6, rtol=0,
                                       msg=lambda m: f"level {k}: {m}")
        else:
            bits = {torch.bfloat16: 8, torch.float16: 11}[out_dtype]  # significand, implicit 1 in
            _, exp = torch.frexp(w.double())
            ulp = torch.ldexp(torch.ones_like(g), exp - bits)
            err = (g - w.double()).abs()
            assert (err <= ulp + 1e-30).all(), f"level {k}: max error {err.max()} > one ulp"


def make_x(shape, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        x = torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8)
    else:
        x = (2 * torch.rand(shape, generator=gen, dtype=torch.float64) - 1).to(dtype)
    return x.to(DEVICE)


# scale/shift map uint8 to [-1, 1], as the data pipeline does
U8 = dict(scale=1 / 127.5, shift=-1.0)


@needs_kernels
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.bfloat16, torch.float16, torch.float32,
                                   torch.float64], ids=str)
def test_dtypes(dtype, out_dtype):
    x = make_x((2, 2, 16, 24), dtype)
    kw = U8 if dtype == torch.uint8 else {}
    assert_matches(P.pyramid_down(x, 3, out_dtype=out_dtype, **kw),
                   pyramid_reference(x, 3, **kw), out_dtype)


@needs_kernels
@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize("hw", [(8, 8), (16, 24), (24, 16)], ids=str)
def test_levels_and_sizes(hw, levels):
    x = make_x((1, 3, *hw), torch.float32, seed=levels)
    out = P.pyramid_down(x, levels)
    assert [o.shape[-2:] for o in out] == [(hw[0] >> k, hw[1] >> k) for k in range(1, levels + 1)]
    assert_matches(out, pyramid_reference(x, levels), torch.float32)


@needs_kernels
def test_permuted_uint8_frame_stack():
    """A (T, H, W, C) decoder frame stack viewed as (T, C, H, W): read in place."""
    frames = make_x((4, 16, 24, 3), torch.uint8, seed=5)
    x = frames.permute(0, 3, 1, 2)
    assert not x.is_contiguous()
    for out_dtype in (torch.float32, torch.bfloat16):
        assert_matches(P.pyramid_down(x, 2, out_dtype=out_dtype, **U8),
                       pyramid_reference(x, 2, **U8), out_dtype)


@needs_kernels
@pytest.mark.parametrize("scale,shift", [(1.0, 0.0), (0.5, 0.25), (-2.0, 1.0)])
def test_scale_shift(scale, shift):
    x = make_x((1, 2, 16, 16), torch.float32, seed=6) / 2
    assert_matches(P.pyramid_down(x, 2, scale=scale, shift=shift),
                   pyramid_reference(x, 2, scale, shift), torch.float32)


@needs_kernels
def test_borders_renormalised():
    """Constant planes stay constant; border taps are [3,3,1]/7; 2x2 -> 1x1 is the mean."""
    ones = torch.full((1, 1, 8, 16), 0.75, device=DEVICE)
    for level in P.pyramid_down(ones, 3):
        # 2 ulp: the GPU contracts the weighted sums into FMAs (an H200 gave 1.19e-7)
        torch.testing.assert_close(level, torch.full_like(level, 0.75), atol=2.4e-7, rtol=0)
    corner = torch.zeros(1, 1, 8, 8, device=DEVICE)
    corner[0, 0, 1, 0] = 1.0  # input row 1 feeds output rows 0 (tap 3/7) and 1 (tap 1/8)
    l1 = P.pyramid_down(corner, 1)[0].cpu()
    assert abs(l1[0, 0, 0, 0].item() - 9 / 49) < 1e-7  # border row and column: 3/7 * 3/7
    assert abs(l1[0, 0, 1, 0].item() - 3 / 56) < 1e-7  # interior row 1/8, border column 3/7
    assert (l1[0, 0, 2:] == 0).all() and (l1[0, 0, :, 1:] == 0).all()
    x = make_x((2, 3, 2, 2), torch.float32, seed=7)
    torch.testing.assert_close(P.pyramid_down(x, 1)[0], x.mean(dim=(2, 3), keepdim=True),
                               atol=1e-7, rtol=0)


@needs_kernels
@pytest.mark.parametrize("levels,tile", [(2, 2), (3, 1), (1, 3)])
def test_tiles_with_halo(levels, tile):
    """Several tiles per plane (the GPU configuration): halos recomputed, tile borders exact."""
    x = make_x((1, 1, 16, 32), torch.uint8, seed=8)
    assert_matches(P.pyramid_down(x, levels, tile=tile, block=64, **U8),
                   pyramid_reference(x, levels, **U8), torch.float32)


@needs_kernels
def test_input_validation():
    x = make_x((1, 2, 8, 12), torch.float32)
    with pytest.raises(ValueError, match=r"divisible by 2\*\*levels = 8, got 8x12"):
        P.pyramid_down(x, 3)
    with pytest.raises(ValueError, match="levels must be an int >= 1"):
        P.pyramid_down(x, 0)
    with pytest.raises(ValueError, match="must be 4D"):
        P.pyramid_down(x[0], 1)
    with pytest.raises(ValueError, match="dtype torch.int32 not supported"):
        P.pyramid_down(x.int(), 1)
    with pytest.raises(ValueError, match="out_dtype torch.uint8 not supported"):
        P.pyramid_down(x, 1, out_dtype=torch.uint8)
    assert [o.shape for o in P.pyramid_down(x[:0], 2)] == [(0, 2, 4, 6), (0, 2, 2, 3)]


def test_kernels_in_interpreter():
    """Reruns this file under TRITON_INTERPRET=1 in a subprocess (CPU tensors)."""
    if P.INTERPRETED:
        pytest.skip("already in the interpreter: the cases run here directly")
    if not P.HAS_TRITON:
        pytest.skip("triton not installed")
    run_in_triton_interpreter(__file__, "not test_kernels_in_interpreter", min_passed=28)
