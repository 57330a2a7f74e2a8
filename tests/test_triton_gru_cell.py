"""Triton ConvGRU cell kernels (kernels/gru_cell.py) against the spec's reference cell.

The kernels run on CPU tensors only in the Triton interpreter, and TRITON_INTERPRET=1
must be set before they are defined; setting it here would leak into every other
test module. So `test_kernels_in_interpreter` reruns this file in a subprocess with
the variable set (there the cases run on CPU); with a GPU they run on CUDA directly.

Tolerances, |got - want| <= atol + rtol * |want| against float64 math on the same
(dtype-rounded) inputs:
  float32: 1e-6 / 1e-6  (fp32 math, one rounding per output)
  float64: 1e-12 / 1e-12
  bfloat16 / float16: one rounding of the output to the dtype (bf16: 8 significant bits;
  the interpreter truncates instead of rounding to nearest, so up to 1 ulp = 2^-7
  relative): bf16 1e-2 / 1e-2, fp16 2e-3 / 2e-3.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from conftest import run_in_triton_interpreter



def load_kernels(name: str):
    """cvg_fast.kernels.<name>: the Triton sources installed with the package."""
    return importlib.import_module(f"cvg_fast.kernels.{name}")


K = load_kernels("gru_cell")
ON_GPU = K.HAS_TRITON and torch.cuda.is_available() and not K.INTERPRETED
DEVICE = "cuda" if ON_GPU else "cpu"
needs_kernels = pytest.mark.skipif(
    not (K.INTERPRETED or ON_GPU), reason="runs in test_kernels_in_interpreter's subprocess")

TOL = {
    torch.float32: dict(atol=1e-6, rtol=1e-6),
    torch.float64: dict(atol=1e-12, rtol=1e-12),
    torch.bfloat16: dict(atol=1e-2, rtol=1e-2),
    torch.float16: dict(atol=2e-3, rtol=2e-3),
}
DTYPES = list(TOL)
SHAPE = (2, 3, 5, 7)  # odd everywhere: C=3, H=5, W=7
LAYOUTS = ("contiguous", "channels_last", "mixed", "time_slice", "channel_half", "unmergeable")


def cell_reference(g_x, g_h, n_x, n_h, h):
    """The spec's definition (section A), in the inputs' precision."""
    C = h.shape[1]
    g = g_x + g_h
    r, z = torch.sigmoid(g[:, :C]), torch.sigmoid(g[:, C:])
    n = torch.tanh(n_x + n_h)
    return r * h, h + z * (n - h)


def _layout(t: torch.Tensor, how: str, gen: torch.Generator) -> torch.Tensor:
    """t's values in layout `how` (a view of a bigger tensor where `how` says so)."""
    N, Ch, H, W = t.shape
    if how == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if how == "time_slice":  # x[:, 1] of an (N, T=3, Ch, H, W) tensor: batch stride 3*Ch*H*W
        big = torch.randn(N, 3, Ch, H, W, generator=gen, dtype=torch.float64).to(t)
        big[:, 1] = t
        return big[:, 1]
    if how == "channel_half":  # second channel half of an (N, 2*Ch, H, W) conv output
        big = torch.randn(N, 2 * Ch, H, W, generator=gen, dtype=torch.float64).to(t)
        big[:, Ch:] = t
        return big[:, Ch:]
    if how == "unmergeable":  # H and W do not merge: the launchers copy (and write back)
        return t.transpose(2, 3).contiguous().transpose(2, 3)
    return t.contiguous()


def make_inputs(shape, dtype, layout="contiguous", seed=0, device=DEVICE):
    """dict of every operand in `layout`; pre-activations ~ N(0, 5) reach saturation.

    mixed: h channels_last, the rest contiguous. time_slice: g_x, n_x, d_g (and d_rh) are
    time slices of (N, T, ., H, W) tensors. channel_half: n_x, n_h, h, d_h are channel halves
    of wider tensors. unmergeable: g_x, h, d_g with swapped H/W strides.
    """
    N, C, H, W = shape
    gen = torch.Generator().manual_seed(seed)

    def rnd(ch, s=1.0):
        return (s * torch.randn(N, ch, H, W, generator=gen, dtype=torch.float64)).to(device, dtype)

    t = dict(g_x=rnd(2 * C, 2), g_h=rnd(2 * C, 1.5), n_x=rnd(C, 1.5), n_h=rnd(C), h=rnd(C),
             d_hnew=rnd(C), d_rh=rnd(C),
             d_g=torch.full((N, 2 * C, H, W), 7.0, dtype=dtype, device=device),
             d_h0=rnd(C))
    per = {name: "contiguous" for name in t}
    if layout in ("contiguous", "channels_last"):
        per = {name: layout for name in t}
    elif layout == "mixed":
        per["h"] = "channels_last"
    elif layout == "time_slice":
        per.update(g_x="time_slice", n_x="time_slice", d_g="time_slice", d_rh="time_slice")
    elif layout == "channel_half":
        per.update(n_x="channel_half", n_h="channel_half", h="channel_half", d_h0="channel_half")
    elif layout == "unmergeable":
        per.update(g_x="unmergeable", h="unmergeable", d_g="unmergeable")
    return {name: _layout(v, per[name], gen) for name, v in t.items()}


def reference64(t):
    """Forward and every gradient in float64 from the (rounded) inputs, via autograd."""
    leaves = {k: t[k].detach().double().requires_grad_() for k in ("g_x", "g_h", "n_x", "n_h", "h")}
    rh, h_new = cell_reference(*leaves.values())
    d_rh, d_hnew = t["d_rh"].double(), t["d_hnew"].double()
    grads = torch.autograd.grad((rh, h_new), list(leaves.values()), (d_rh, d_hnew))
    g = dict(zip(leaves, grads))
    C = t["h"].shape[1]
    gd = t["g_x"].double() + t["g_h"].double()
    z = torch.sigmoid(gd[:, C:])
    r = torch.sigmoid(gd[:, :C])
    return dict(rh=rh.detach(), h_new=h_new.detach(), d_g=g["g_x"], d_n=g["n_x"], d_h=g["h"],
                d_h_direct=d_hnew * (1 - z), d_rh_r=d_rh * r)


def close(got, want, what):
    torch.testing.assert_close(got.double().cpu(), want.cpu(), **TOL[got.dtype],
                               msg=lambda m: f"{what} ({got.dtype}): {m}")


def like_h_stride(h):
    return torch.empty_like(h).stride()


# ---- numerics ------------------------------------------------------------------------------


@needs_kernels
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_forward(dtype, layout):
    t = make_inputs(SHAPE, dtype, layout)
    want = reference64(t)
    rh = K.gru_reset_fwd(t["g_x"], t["g_h"], t["h"])
    h_new = K.gru_update_fwd(t["g_x"], t["g_h"], t["n_x"], t["n_h"], t["h"])
    for name, got in (("rh", rh), ("h_new", h_new)):
        assert got.dtype == dtype and got.shape == t["h"].shape
        close(got, want[name], name)
        h = t["h"] if layout != "unmergeable" else t["h"].contiguous()
        assert got.stride() == like_h_stride(h), (name, got.stride())


@needs_kernels
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_backward(dtype, layout):
    t = make_inputs(SHAPE, dtype, layout, seed=1)
    want = reference64(t)
    C = SHAPE[1]
    d_g = t["d_g"]
    d_n, d_h = K.gru_update_bwd(t["d_hnew"], t["g_x"], t["g_h"], t["n_x"], t["n_h"], t["h"], d_g)
    assert (d_g[:, :C] == 7).all(), "gru_update_bwd touched the r half of d_g"
    close(d_g[:, C:], want["d_g"][:, C:], "d_g z half")
    close(d_n, want["d_n"], "d_n")
    close(d_h, want["d_h_direct"], "d_h direct")
    for got in (d_n, d_h):
        assert got.dtype == dtype
        h = t["h"] if layout != "unmergeable" else t["h"].contiguous()
        assert got.stride() == like_h_stride(h)

    z_half = d_g[:, C:].clone()
    d_h_in = t["d_h0"]  # an arbitrary accumulator in the layout under test
    d_h_in_values = d_h_in.double().clone()
    ret = K.gru_reset_bwd(t["d_rh"], t["g_x"], t["g_h"], t["h"], d_g, d_h_in)
    assert ret is None
    assert torch.equal(d_g[:, C:], z_half), "gru_reset_bwd touched the z half of d_g"
    close(d_g[:, :C], want["d_g"][:, :C], "d_g r half")
    close(d_h_in, d_h_in_values + want["d_rh_r"], "d_h accumulated")

    # the composition gives autograd's gradient of h (one more rounding for 16-bit types)
    K.gru_reset_bwd(t["d_rh"], t["g_x"], t["g_h"], t["h"], d_g, d_h)
    if dtype in (torch.float32, torch.float64):
        close(d_h, want["d_h"], "d_h total")


@needs_kernels
@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (2, 1, 1, 9), (3, 2, 6, 1), (1, 1, 1, 1),
                                   (2, 5, 4, 4)], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_odd_shapes_and_many_programs(shape, layout):
    """Batch 1, H or W of 1, and a block of 16 elements: many programs, partial last block."""
    t = make_inputs(shape, torch.float32, layout, seed=2)
    want = reference64(t)
    close(K.gru_reset_fwd(t["g_x"], t["g_h"], t["h"], block=16), want["rh"], "rh")
    close(K.gru_update_fwd(t["g_x"], t["g_h"], t["n_x"], t["n_h"], t["h"], block=16),
          want["h_new"], "h_new")
    d_n, d_h = K.gru_update_bwd(t["d_hnew"], t["g_x"], t["g_h"], t["n_x"], t["n_h"], t["h"],
                                t["d_g"], block=16)
    K.gru_reset_bwd(t["d_rh"], t["g_x"], t["g_h"], t["h"], t["d_g"], d_h, block=16)
    close(t["d_g"], want["d_g"], "d_g")
    close(d_n, want["d_n"], "d_n")
    close(d_h, want["d_h"], "d_h")


@needs_kernels
# the interpreter's sigmoid overflows exp(-x) to inf on the way to 0
@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")
def test_saturated_preactivations_stay_finite():
    """|pre| up to 80: z, 1 - z, n, 1 - n^2 in their safe forms, gradients exact and finite."""
    t = make_inputs(SHAPE, torch.float32, seed=3)
    for k in ("g_x", "n_x"):
        t[k] = t[k] * 20
    want = reference64(t)
    d_n, d_h = K.gru_update_bwd(t["d_hnew"], t["g_x"], t["g_h"], t["n_x"], t["n_h"], t["h"],
                                t["d_g"])
    K.gru_reset_bwd(t["d_rh"], t["g_x"], t["g_h"], t["h"], t["d_g"], d_h)
    for name, got in (("d_g", t["d_g"]), ("d_n", d_n), ("d_h", d_h)):
        assert torch.isfinite(got).all(), name
        close(got, want[name], name)


@needs_kernels
def test_empty_batch():
    t = make_inputs((0, 3, 5, 7), torch.float32)
    assert K.gru_reset_fwd(t["g_x"], t["g_h"], t["h"]).shape == (0, 3, 5, 7)
    d_n, d_h = K.gru_update_bwd(t["d_hnew"], t["g_x"], t["g_h"], t["n_x"], t["n_h"], t["h"],
                                t["d_g"])
    K.gru_reset_bwd(t["d_rh"], t["g_x"], t["g_h"], t["h"], t["d_g"], d_h)
    assert d_n.shape == d_h.shape == (0, 3, 5, 7)


@needs_kernels
def test_input_validation():
    t = make_inputs(SHAPE, torch.float32)
    with pytest.raises(ValueError,
                       match=r"g_h has shape \(2, 3, 5, 7\) but must be \(2, 6, 5, 7\)"):
        K.gru_reset_fwd(t["g_x"], t["g_h"][:, :3], t["h"])
    with pytest.raises(ValueError, match="n_h is torch.float64 but h is torch.float32"):
        K.gru_update_fwd(t["g_x"], t["g_h"], t["n_x"], t["n_h"].double(), t["h"])
    with pytest.raises(ValueError, match="must be 4D"):
        K.gru_reset_fwd(t["g_x"], t["g_h"], t["h"][0])
    with pytest.raises(ValueError, match="not supported"):
        K.gru_reset_fwd(*(x.int() for x in (t["g_x"], t["g_h"], t["h"])))
    with pytest.raises(ValueError, match=r"d_g has shape"):
        K.gru_update_bwd(t["d_hnew"], t["g_x"], t["g_h"], t["n_x"], t["n_h"], t["h"], t["h"])


def test_iteration_order_follows_the_output_layout():
    """The 1D program id walks (n, c, s) with the output's unit-stride axis innermost."""
    x = torch.empty(2, 3, 5, 7)
    assert K._order(x) == (0, 1, 2)
    assert K._order(x.contiguous(memory_format=torch.channels_last)) == (0, 2, 1)
    batch1 = torch.empty(1, 3, 5, 7).contiguous(memory_format=torch.channels_last)
    assert K._order(batch1) == (0, 2, 1)
    assert K._nc_s_strides(x.transpose(2, 3)) is None
    assert K._nc_s_strides(torch.empty(2, 4, 3, 5, 7)[:, 1]) == (420, 35, 1)


# ---- the interpreter run -------------------------------------------------------------------


def test_kernels_in_interpreter():
    """Reruns this file under TRITON_INTERPRET=1 in a subprocess (CPU tensors)."""
    if K.INTERPRETED:
        pytest.skip("already in the interpreter: the cases run here directly")
    if not K.HAS_TRITON:
        pytest.skip("triton not installed")
    run_in_triton_interpreter(__file__, "not test_kernels_in_interpreter", min_passed=60)
