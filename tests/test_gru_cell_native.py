"""ConvGRU cell kernels of cvg_fast._C (torch.ops.cvg_fast.gru_{reset,update}_{fwd,bwd}) on CPU
against the float64 autograd reference: forward values, every gradient (the in-place d_g
halves, the d_h accumulation), dtypes, odd shapes, strided operands, output layouts, the
Meta kernels, input errors, and a float64 gradcheck of the whole cell chained through the
candidate conv.
"""

from __future__ import annotations

import pytest
import torch
import torch._prims_common
import torch.nn.functional as F

from cvg_fast.ops import backends

_status = backends.available_backends()
pytestmark = pytest.mark.skipif(_status["cpp"] != "ok", reason=_status["cpp"])

ops = torch.ops.cvg_fast

# |got - want| <= atol + rtol * |want| against float64 from the dtype-rounded inputs.
# The kernels compute in fp32 (fp64 for double) and round once on store; d_h is rounded
# twice (gru_update_bwd stores the direct part, gru_reset_bwd adds d_rh * r), hence
# two roundings' worth for the half types: bf16 2 * 2^-8 ~ 8e-3 -> 1.6e-2, fp16 2 * 2^-11.
TOL = {
    torch.float32: dict(atol=1e-6, rtol=1e-6),
    torch.float64: dict(atol=1e-12, rtol=1e-12),
    torch.bfloat16: dict(atol=1.6e-2, rtol=1.6e-2),
    torch.float16: dict(atol=2e-3, rtol=2e-3),
}
DTYPES = list(TOL)
SHAPES = [
    (3, 3, 5, 7),     # odd everything
    (1, 4, 6, 6),     # batch 1
    (2, 5, 17, 31),   # rows longer than one CPU chunk (256), with tails
    (1, 300, 2, 3),   # channels_last rows longer than one chunk
]
LAYOUTS = ("contiguous", "channels_last", "strided", "mixed", "unmerged")
SENTINEL = 1234.5


def cell_reference(g_x, g_h, n_x, n_h, h, acc=torch.float32):
    """The spec's definition (kernels spec, section A); `acc` replaces its .float() so that
    the float64 reference stays float64."""
    C = h.shape[1]
    g = (g_x + g_h).to(acc)
    r = torch.sigmoid(g[:, :C])
    z = torch.sigmoid(g[:, C:])
    rh = r * h.to(acc)
    n = torch.tanh((n_x + n_h).to(acc))
    h_new = h.to(acc) + z * (n - h.to(acc))
    return rh, h_new


def reference64(inputs, d_rh, d_hnew):
    """(rh, h_new) and the gradients wrt (g_x, g_h, n_x, n_h, h), all in float64, from the
    dtype-rounded inputs."""
    leaves = [t.detach().double().requires_grad_() for t in inputs]
    rh, h_new = cell_reference(*leaves, acc=torch.float64)
    grads = torch.autograd.grad((rh, h_new), leaves, (d_rh.double(), d_hnew.double()))
    return [rh.detach(), h_new.detach()], grads


def make_inputs(shape, dtype, layout="contiguous", seed=0, T=3, t=1):
    """(g_x, g_h, n_x, n_h, h, d_rh, d_hnew) in `layout`; gates ~ N(0, 9) to saturate.

    strided: g_x, n_x are time slices x[:, t] of (N, T, ., H, W) tensors, g_h a channel
      window of a wider tensor, n_h and h channel halves (h of a channels_last tensor).
    mixed: h (so the outputs) channels_last, the rest contiguous.
    unmerged: every operand a W-slice x[..., ::2] (H and W do not merge: copied inside).
    """
    N, C, H, W = shape
    gen = torch.Generator().manual_seed(seed)

    def rnd(*s, scale=1.0):
        return (scale * torch.randn(*s, generator=gen, dtype=torch.float64)).to(dtype)

    G = (N, 2 * C, H, W)
    if layout == "strided":
        g_x = rnd(N, T, 2 * C, H, W, scale=3)[:, t]
        g_h = rnd(N, 2 * C + 3, H, W, scale=3)[:, 1:2 * C + 1]
        n_x = rnd(N, T, C, H, W, scale=3)[:, t]
        n_h = rnd(N, 2 * C, H, W, scale=3)[:, C:]
        h = rnd(N, 2 * C, H, W).contiguous(memory_format=torch.channels_last)[:, :C]
        d_rh = rnd(N, T, C, H, W)[:, t]
        d_hnew = rnd(N, 2 * C, H, W)[:, :C]
        return g_x, g_h, n_x, n_h, h, d_rh, d_hnew
    if layout == "unmerged":
        def wide(s, scale=1.0):
            return rnd(*s[:3], 2 * s[3], scale=scale)[..., ::2]
        g_x, g_h = wide(G, 3), wide(G, 3)
        n_x, n_h = wide(shape, 3), wide(shape, 3)
        h, d_rh, d_hnew = wide(shape), wide(shape), wide(shape)
        return g_x, g_h, n_x, n_h, h, d_rh, d_hnew
    ts = [rnd(*G, scale=3), rnd(*G, scale=3), rnd(*shape, scale=3), rnd(*shape, scale=3),
          rnd(*shape), rnd(*shape), rnd(*shape)]
    if layout == "channels_last":
        ts = [x.contiguous(memory_format=torch.channels_last) for x in ts]
    elif layout == "mixed":
        ts[4] = ts[4].contiguous(memory_format=torch.channels_last)
    return tuple(ts)


def assert_layout_follows_h(out, h):
    """Outputs are allocated like h: channels_last when h's strides are channels_last-like
    (torch's suggest_memory_format, as the C++ side uses), else contiguous."""
    fmt = torch._prims_common.suggest_memory_format(h)
    assert out.shape == h.shape and out.dtype == h.dtype
    assert out.is_contiguous(memory_format=fmt), (fmt, out.stride(), h.stride())


def new_d_g(shape, dtype, layout):
    """A caller-allocated (N, 2C, H, W) d_g filled with a sentinel (unwritten halves keep it)."""
    N, C, H, W = shape
    if layout == "unmerged":
        return torch.full((N, 2 * C, H, 2 * W), SENTINEL, dtype=dtype)[..., ::2]
    if layout == "strided":  # a time slice, as a sequence-wide gradient buffer would be
        return torch.full((N, 2, 2 * C, H, W), SENTINEL, dtype=dtype)[:, 1]
    d_g = torch.full((N, 2 * C, H, W), SENTINEL, dtype=dtype)
    return d_g.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else d_g


def close(got, want, dtype, what):
    torch.testing.assert_close(got.double(), want, **TOL[dtype], msg=lambda m: f"{what}: {m}")


# ---- forward ---------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward(shape, dtype, layout):
    g_x, g_h, n_x, n_h, h, d_rh, d_hnew = make_inputs(shape, dtype, layout)
    before = [t.clone() for t in (g_x, g_h, n_x, n_h, h)]
    (want_rh, want_hnew), _ = reference64((g_x, g_h, n_x, n_h, h), d_rh, d_hnew)
    rh = ops.gru_reset_fwd(g_x, g_h, h)
    h_new = ops.gru_update_fwd(g_x, g_h, n_x, n_h, h)
    close(rh, want_rh, dtype, "rh")
    close(h_new, want_hnew, dtype, "h_new")
    for out in (rh, h_new):
        assert_layout_follows_h(out, h)
    for t, b in zip((g_x, g_h, n_x, n_h, h), before):  # inputs untouched
        assert torch.equal(t, b)


# ---- backward --------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_backward(shape, dtype, layout):
    """update_bwd then reset_bwd, as the cell's backward runs them, against autograd."""
    inputs = make_inputs(shape, dtype, layout, seed=1)
    g_x, g_h, n_x, n_h, h, d_rh, d_hnew = inputs
    C = shape[1]
    # The update stage alone (d_rh = 0): z-half of d_g, d_n, and the direct part of d_h.
    _, (want_gz, _, want_dn, _, want_dh_direct) = reference64(inputs[:5], torch.zeros_like(d_rh), d_hnew)
    _, (want_dg, want_dg_h, want_dn_x, want_dn_h, want_dh) = reference64(inputs[:5], d_rh, d_hnew)
    assert torch.equal(want_dg, want_dg_h) and torch.equal(want_dn_x, want_dn_h)

    d_g = new_d_g(shape, dtype, layout)
    d_n, d_h = ops.gru_update_bwd(d_hnew, g_x, g_h, n_x, n_h, h, d_g)
    assert (d_g[:, :C] == SENTINEL).all(), "gru_update_bwd wrote the r-half of d_g"
    close(d_g[:, C:], want_gz[:, C:], dtype, "d_g z-half")
    close(d_n, want_dn, dtype, "d_n")
    close(d_h, want_dh_direct, dtype, "d_h (direct part)")
    for out in (d_n, d_h):
        assert_layout_follows_h(out, h)

    ret = ops.gru_reset_bwd(d_rh, g_x, g_h, h, d_g, d_h)
    assert ret is None
    close(d_g, want_dg, dtype, "d_g")
    close(d_h, want_dh, dtype, "d_h (accumulated)")
    assert_layout_follows_h(d_h, h)


def test_reset_bwd_accumulates_into_d_h():
    """d_h += d_rh * r: an arbitrary d_h comes out as itself plus the reset part."""
    g_x, g_h, n_x, n_h, h, d_rh, _ = make_inputs((2, 3, 4, 5), torch.float64, seed=2)
    start = torch.randn(h.shape, dtype=torch.float64)
    d_h, d_g = start.clone(), torch.full(g_x.shape, SENTINEL, dtype=torch.float64)
    ops.gru_reset_bwd(d_rh, g_x, g_h, h, d_g, d_h)
    r = torch.sigmoid((g_x + g_h)[:, :3])
    torch.testing.assert_close(d_h, start + d_rh * r, atol=1e-14, rtol=1e-14)
    torch.testing.assert_close(d_g[:, :3], d_rh * h * r * (1 - r), atol=1e-14, rtol=1e-12)
    assert (d_g[:, 3:] == SENTINEL).all(), "gru_reset_bwd wrote the z-half of d_g"


def test_saturated_gates_keep_relative_precision():
    """Safe forms: at |pre| = 20 the fp32 gradients are tiny but still accurate (the textbook
    1 - z or 1 - n^2 would round to 0 or lose every digit)."""
    shape = (1, 2, 3, 4)
    g_x = torch.full((1, 4, 3, 4), 20.0)
    g_h = torch.zeros_like(g_x)
    n_x, n_h = torch.full(shape, 20.0), torch.zeros(shape)
    h, d = torch.full(shape, 0.5), torch.ones(shape)
    d_g = torch.empty_like(g_x)
    d_n, d_h = ops.gru_update_bwd(d, g_x, g_h, n_x, n_h, h, d_g)
    # Closed forms in float64 (autograd's 1 - tanh(20)^2 is 0 even there): z = n = 1 - tiny.
    z_tail = torch.sigmoid(torch.tensor(-20.0, dtype=torch.float64))  # 1 - z
    e = torch.exp(torch.tensor(-40.0, dtype=torch.float64))
    z, n = 1 - z_tail, torch.tanh(torch.tensor(20.0, dtype=torch.float64))
    want = {"d_h": z_tail, "d_n": z * 4 * e / (1 + e) ** 2, "d_g z-half": (n - 0.5) * z * z_tail}
    assert (d_h > 0).all() and (d_n > 0).all() and (d_g[:, 2:] > 0).all()
    for name, got in (("d_h", d_h), ("d_n", d_n), ("d_g z-half", d_g[:, 2:])):
        torch.testing.assert_close(got.double(), want[name].expand(got.shape), atol=0, rtol=1e-5,
                                   msg=lambda m, k=name: f"{k}: {m}")


# ---- the chain through the candidate conv: gradcheck -----------------------------------------


class CellThroughConv(torch.autograd.Function):
    """h' of one ConvGRU step given the gate pre-activations g_x, g_h, the input part n_x
    of the candidate and the candidate conv weight w: n_h = conv(r * h, w)."""

    @staticmethod
    def forward(ctx, g_x, g_h, n_x, h, w):
        rh = ops.gru_reset_fwd(g_x, g_h, h)
        n_h = F.conv2d(rh, w, padding=1)
        ctx.save_for_backward(g_x, g_h, n_x, h, w, rh, n_h)
        return ops.gru_update_fwd(g_x, g_h, n_x, n_h, h)

    @staticmethod
    def backward(ctx, d_hnew):
        g_x, g_h, n_x, h, w, rh, n_h = ctx.saved_tensors
        d_g = torch.empty_like(g_x)
        d_n, d_h = ops.gru_update_bwd(d_hnew.contiguous(), g_x, g_h, n_x, n_h, h, d_g)
        d_rh = torch.nn.grad.conv2d_input(rh.shape, w, d_n, padding=1)
        d_w = torch.nn.grad.conv2d_weight(rh, w.shape, d_n, padding=1)
        ops.gru_reset_bwd(d_rh, g_x, g_h, h, d_g, d_h)
        return d_g, d_g.clone(), d_n, d_h, d_w


def cell_through_conv_reference(g_x, g_h, n_x, h, w):
    rh, _ = cell_reference(g_x, g_h, n_x, torch.zeros_like(n_x), h, acc=torch.float64)
    n_h = F.conv2d(rh, w, padding=1)
    return cell_reference(g_x, g_h, n_x, n_h, h, acc=torch.float64)[1]


@pytest.mark.parametrize("layout", ("contiguous", "channels_last"))
def test_gradcheck_cell_through_conv(layout):
    gen = torch.Generator().manual_seed(3)
    N, C, H, W = 2, 3, 4, 5
    mf = torch.channels_last if layout == "channels_last" else torch.contiguous_format

    def leaf(*s, scale=1.0):
        t = scale * torch.randn(*s, generator=gen, dtype=torch.float64)
        return t.contiguous(memory_format=mf).requires_grad_()

    args = (leaf(N, 2 * C, H, W, scale=2), leaf(N, 2 * C, H, W, scale=2), leaf(N, C, H, W, scale=2),
            leaf(N, C, H, W), leaf(C, C, 3, 3, scale=0.3))
    torch.testing.assert_close(CellThroughConv.apply(*args), cell_through_conv_reference(*args),
                               atol=1e-12, rtol=1e-12)
    assert torch.autograd.gradcheck(CellThroughConv.apply, args, eps=1e-6, atol=1e-8, rtol=1e-6)
    # and the same gradients as autograd through the reference
    out = CellThroughConv.apply(*args)
    d = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    got = torch.autograd.grad(out, args, d)
    want = torch.autograd.grad(cell_through_conv_reference(*args), args, d)
    for name, a, b in zip(("g_x", "g_h", "n_x", "h", "w"), got, want):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10, msg=lambda m, n=name: f"{n}: {m}")


# ---- Meta kernels, schemas, errors -----------------------------------------------------------


def test_meta_kernels_shapes_and_layouts():
    h = torch.empty(2, 3, 4, 5, device="meta").contiguous(memory_format=torch.channels_last)
    g = torch.empty(2, 6, 4, 5, device="meta")
    rh = ops.gru_reset_fwd(g, g, h)
    h_new = ops.gru_update_fwd(g, g, h, h, h)
    d_n, d_h = ops.gru_update_bwd(h, g, g, h, h, h, g)
    for out in (rh, h_new, d_n, d_h):
        assert out.device.type == "meta" and out.shape == h.shape and out.stride() == h.stride()
    assert ops.gru_reset_bwd(h, g, g, h, g, d_h) is None
    with pytest.raises(RuntimeError, match="2C"):
        ops.gru_reset_fwd(h, h, h)


@pytest.mark.parametrize("layout", ("contiguous", "channels_last", "strided"))
def test_opcheck(layout):
    """Schema (in-place annotations match what is written), fake tensors, dispatch."""
    g_x, g_h, n_x, n_h, h, d_rh, d_hnew = make_inputs((2, 3, 4, 5), torch.float32, layout)
    d_g = new_d_g((2, 3, 4, 5), torch.float32, layout)
    d_h = torch.randn(h.shape)
    tests = ("test_schema", "test_faketensor")
    torch.library.opcheck(ops.gru_reset_fwd.default, (g_x, g_h, h), test_utils=tests)
    torch.library.opcheck(ops.gru_update_fwd.default, (g_x, g_h, n_x, n_h, h), test_utils=tests)
    torch.library.opcheck(ops.gru_update_bwd.default, (d_hnew, g_x, g_h, n_x, n_h, h, d_g),
                          test_utils=tests)
    torch.library.opcheck(ops.gru_reset_bwd.default, (d_rh, g_x, g_h, h, d_g, d_h), test_utils=tests)


def test_bad_inputs_raise_clear_errors():
    g_x, g_h, n_x, n_h, h, d_rh, d_hnew = make_inputs((2, 3, 4, 5), torch.float32)
    d_g, d_h = torch.empty_like(g_x), torch.empty_like(h)
    with pytest.raises(RuntimeError, match=r"g_x has shape .* expected \(N, 2C, H, W\)"):
        ops.gru_reset_fwd(n_x, g_h, h)
    with pytest.raises(RuntimeError, match="n_h has shape"):
        ops.gru_update_fwd(g_x, g_h, n_x, g_h, h)
    with pytest.raises(RuntimeError, match="g_h is Double but h is Float"):
        ops.gru_update_fwd(g_x, g_h.double(), n_x, n_h, h)
    with pytest.raises(RuntimeError, match="expected 4D"):
        ops.gru_reset_fwd(g_x[0], g_h[0], h[0])
    with pytest.raises(RuntimeError, match="floating dtype"):
        ops.gru_reset_fwd(g_x.int(), g_h.int(), h.int())
    with pytest.raises(RuntimeError, match="d_g has shape"):
        ops.gru_update_bwd(d_hnew, g_x, g_h, n_x, n_h, h, d_h)
    with pytest.raises(RuntimeError, match="d_h is BFloat16"):
        ops.gru_reset_bwd(d_rh, g_x, g_h, h, d_g, d_h.bfloat16())
    with pytest.raises(RuntimeError, match="d_rh has shape"):
        ops.gru_reset_bwd(d_rh[:, :2], g_x, g_h, h, d_g, d_h)


def test_empty_batch():
    g_x, g_h, n_x, n_h, h, d_rh, d_hnew = make_inputs((0, 3, 4, 5), torch.float32)
    assert ops.gru_update_fwd(g_x, g_h, n_x, n_h, h).shape == h.shape
    d_g = torch.empty_like(g_x)
    d_n, d_h = ops.gru_update_bwd(d_hnew, g_x, g_h, n_x, n_h, h, d_g)
    ops.gru_reset_bwd(d_rh, g_x, g_h, h, d_g, d_h)
    assert d_n.shape == d_h.shape == h.shape
