"""torch.ops.cvg_fast.pyramid_down (csrc/pyramid_cpu.cpp, csrc/pyramid_cuda.cu) against
the F.interpolate antialias chain it replaces: every input dtype, fp32 / bf16 / fp64
outputs, 1..3 levels, odd-sized and tiny planes, strided inputs (a permuted uint8 frame
stack, channel slices, time slices, channels_last), scale / shift, borders, the Meta
kernel and the error messages. CUDA cases run only where a GPU is visible.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cvg_fast.ops import backends

_status = backends.available_backends()


def _op_missing() -> str | None:
    if _status["cpp"] != "ok":
        return _status["cpp"]
    try:
        torch.ops.cvg_fast.pyramid_down  # noqa: B018  (raises if this build lacks the op)
    except (AttributeError, RuntimeError):
        return "cvg_fast._C was built without pyramid_down: rebuild the extension"
    return None


pytestmark = pytest.mark.skipif(_op_missing() is not None, reason=str(_op_missing()))

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(
        _status["cuda"] != "ok" or not torch.cuda.is_available(),
        reason=_status["cuda"] if _status["cuda"] != "ok" else "no GPU")),
]
IN_DTYPES = [torch.uint8, torch.bfloat16, torch.float16, torch.float32, torch.float64]
SCALE, SHIFT = 2 / 255, -1.0  # uint8 frames -> [-1, 1], as the data pipeline does


def pyramid_down(x, levels, scale=1.0, shift=0.0, out_dtype=torch.float32):
    return torch.ops.cvg_fast.pyramid_down(x, levels, scale, shift, out_dtype)


def pyramid_reference(x, levels, scale=1.0, shift=0.0, dtype=torch.float32):
    """The spec's definition (fp32), or the same chain in float64 (dtype=torch.float64)."""
    y = x.to(dtype) * scale + shift
    out = []
    for _ in range(levels):
        y = F.interpolate(y, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
        out.append(y)
    return out


def make_input(shape, dtype, device, seed=0):
    """(x, scale, shift): uint8 frames with the [-1, 1] mapping, or values in [-1, 1]
    that `dtype` holds exactly with scale 1, shift 0."""
    gen = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8).to(device), SCALE, SHIFT
    return (torch.rand(shape, generator=gen) * 2 - 1).to(device=device, dtype=dtype), 1.0, 0.0


def assert_fp32_close(got, want, what=""):
    """fp32 output: 1e-6 absolute for values in [-1, 1] (the spec's tolerance)."""
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want.float(), atol=1e-6, rtol=0, msg=lambda m: f"{what}: {m}")


def assert_one_bf16_rounding(got, want, what=""):
    """bf16 output = one bf16 rounding of an fp32 result within 1e-6 of `want`: equal to
    want.to(bf16) or one bf16 ulp (2^-7 relative at most) away, plus that fp32 slack."""
    assert got.dtype == torch.bfloat16
    want_b = want.to(torch.bfloat16).float()
    err = (got.float() - want_b).abs()
    bound = want_b.abs() * 2.0 ** -7 + 1e-6
    assert bool((err <= bound).all()), f"{what}: worst excess {float((err - bound).max())}"
    # ... and most elements are not off by one: the op rounds once, it does not truncate.
    assert float((err == 0).float().mean()) > 0.95, f"{what}: too many elements off by one ulp"


# ---- against the reference ----------------------------------------------------------------


@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize("in_dtype", IN_DTYPES, ids=str)
@pytest.mark.parametrize("device", DEVICES)
def test_matches_reference(device, in_dtype, levels):
    x, scale, shift = make_input((2, 3, 16, 24), in_dtype, device)  # non-square, C = 3
    want = pyramid_reference(x, levels, scale, shift)
    got32 = pyramid_down(x, levels, scale, shift, torch.float32)
    got16 = pyramid_down(x, levels, scale, shift, torch.bfloat16)
    assert len(got32) == len(got16) == levels
    for k, (a, b, w) in enumerate(zip(got32, got16, want), start=1):
        assert a.shape == b.shape == (2, 3, 16 >> k, 24 >> k)
        assert a.is_contiguous() and b.is_contiguous() and a.device == x.device
        assert_fp32_close(a, w, f"{in_dtype} -> fp32 level {k}")
        assert_one_bf16_rounding(b, w, f"{in_dtype} -> bf16 level {k}")


@pytest.mark.parametrize("in_dtype", [torch.uint8, torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("device", DEVICES)
def test_float64_output(device, in_dtype):
    """fp64 math when x and out_dtype are float64 (tight); else fp32 math cast to fp64."""
    x, scale, shift = make_input((2, 3, 16, 24), in_dtype, device, seed=1)
    got = pyramid_down(x, 3, scale, shift, torch.float64)
    if in_dtype == torch.float64:
        want = pyramid_reference(x, 3, scale, shift, dtype=torch.float64)
        for a, w in zip(got, want):
            assert a.dtype == torch.float64
            torch.testing.assert_close(a, w, atol=1e-14, rtol=1e-14)
    else:
        for a, w in zip(got, pyramid_reference(x, 3, scale, shift)):
            assert a.dtype == torch.float64
            torch.testing.assert_close(a, w.double(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_tiny_plane_to_one_pixel(device):
    """4x4, 2 levels: level 1 uses only border taps ([3,3,1]/7, [1,3,3]/7), level 2 is the
    2x2 -> 1x1 case ([3,3]/6: the mean); batch 1."""
    x = torch.arange(16.0, device=device).view(1, 1, 4, 4)
    y1, y2 = pyramid_down(x, 2)
    rows = torch.tensor([20 / 7, 64 / 7], device=device).view(2, 1)
    cols = torch.tensor([5 / 7, 16 / 7], device=device).view(1, 2)
    torch.testing.assert_close(y1[0, 0], rows + cols, atol=2e-6, rtol=0)
    assert y2.shape == (1, 1, 1, 1)
    torch.testing.assert_close(y2.flatten(), torch.tensor([7.5], device=device), atol=2e-6, rtol=0)
    for a, w in zip((y1, y2), pyramid_reference(x, 2)):
        torch.testing.assert_close(a, w, atol=2e-6, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_borders_and_constants(device):
    x = torch.zeros(1, 1, 8, 8, dtype=torch.float64, device=device)
    x[..., 0, 0] = 1  # corner: (3/7)^2 stays at (0, 0), nothing spreads elsewhere
    y = pyramid_down(x, 1, out_dtype=torch.float64)[0][0, 0]
    assert float(y[0, 0]) == pytest.approx(9 / 49, abs=1e-15)
    assert float(y.abs().sum() - y[0, 0]) == 0
    x = torch.zeros(1, 1, 8, 8, dtype=torch.float64, device=device)
    x[..., 3, 3] = 1  # interior: 3/8 to output 1, 1/8 to output 2 on each axis
    col = torch.tensor([0, 3 / 8, 1 / 8, 0], dtype=torch.float64, device=device)
    torch.testing.assert_close(pyramid_down(x, 1, out_dtype=torch.float64)[0][0, 0],
                               torch.outer(col, col), atol=1e-15, rtol=0)
    c = torch.full((2, 2, 16, 8), 0.25, device=device)  # renormalised taps keep constants
    for y in pyramid_down(c, 3):
        assert bool((y == 0.25).all())


# ---- layouts ------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_permuted_uint8_frames(device):
    """A decoder's (T, H, W, C) uint8 stack viewed as (T, C, H, W): read in place."""
    frames, _, _ = make_input((5, 32, 16, 3), torch.uint8, device, seed=2)
    x = frames.permute(0, 3, 1, 2)
    assert not x.is_contiguous()
    got = pyramid_down(x, 3, SCALE, SHIFT)
    same = pyramid_down(x.contiguous(), 3, SCALE, SHIFT)
    for a, b, w in zip(got, same, pyramid_reference(x, 3, SCALE, SHIFT)):
        assert a.is_contiguous() and a.shape == b.shape
        assert torch.equal(a, b)  # strides change where x is read from, not the math
        assert_fp32_close(a, w, "permuted uint8")


@pytest.mark.parametrize("layout", ["channels_last", "channel_slice", "time_slice"])
@pytest.mark.parametrize("device", DEVICES)
def test_strided_float_inputs(device, layout):
    if layout == "channels_last":
        x = make_input((2, 3, 8, 16), torch.float32, device, seed=3)[0]
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "channel_slice":  # channels 2..4 of a wider tensor
        x = make_input((2, 7, 8, 16), torch.float32, device, seed=3)[0][:, 2:5]
    else:  # x[:, t] of an (N, T, C, H, W) clip
        x = make_input((2, 4, 3, 8, 16), torch.float32, device, seed=3)[0][:, 1]
    got = pyramid_down(x, 2)
    for a, b, w in zip(got, pyramid_down(x.contiguous(), 2), pyramid_reference(x, 2)):
        assert torch.equal(a, b)
        assert_fp32_close(a, w, layout)


@pytest.mark.parametrize("device", DEVICES)
def test_many_planes_across_threads(device):
    """More planes than one parallel task takes: every plane lands in its own output."""
    x, scale, shift = make_input((64, 3, 8, 8), torch.uint8, device, seed=4)
    for a, w in zip(pyramid_down(x, 3, scale, shift), pyramid_reference(x, 3, scale, shift)):
        assert_fp32_close(a, w, "many planes")


def test_defaults_and_meta():
    x = torch.rand(1, 2, 8, 8)
    y = torch.ops.cvg_fast.pyramid_down(x, 2)  # scale 1, shift 0, float32
    assert [t.dtype for t in y] == [torch.float32] * 2
    for a, w in zip(y, pyramid_reference(x, 2)):
        assert_fp32_close(a, w, "defaults")
    m = torch.empty(3, 2, 16, 24, dtype=torch.uint8, device="meta")
    out = pyramid_down(m, 3, SCALE, SHIFT, torch.bfloat16)
    assert [tuple(t.shape) for t in out] == [(3, 2, 8, 12), (3, 2, 4, 6), (3, 2, 2, 3)]
    assert all(t.device.type == "meta" and t.dtype == torch.bfloat16 for t in out)


# ---- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("args,match", [
    ((torch.rand(2, 8, 8), 1), r"expected x of shape \(B, C, H, W\), got 3 dims"),
    ((torch.rand(1, 1, 8, 8), 0), r"levels must be >= 1, got 0"),
    ((torch.rand(1, 1, 8, 12), 3), r"divisible by 2\*\*levels = 2\*\*3, got H=8 W=12"),
    ((torch.rand(1, 1, 8, 8).int(), 1), r"x must be uint8, bfloat16, float16, float32 or float64"),
    ((torch.rand(1, 1, 8, 8), 1, 1.0, 0.0, torch.uint8), r"out_dtype must be bfloat16"),
], ids=["rank", "levels", "divisible", "x_dtype", "out_dtype"])
def test_errors(device, args, match):
    x, *rest = args
    with pytest.raises(RuntimeError, match=match):
        torch.ops.cvg_fast.pyramid_down(x.to(device), *rest)
