"""The models run their fused ops through the one dispatch point: switching the backend
(reference, cpp; triton under the interpreter) gives the same outputs and gradients.

Also the fused ConvGRU sequence's schedule itself (forward, the backward walk, the batched
weight gradients), checked in float64 with plain-torch pointwise kernels so that a wrong
schedule cannot hide behind a kernel's rounding.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import narrow_tiny

from cvg_fast.models import build_discriminator, build_generator
from cvg_fast.nn import ConvGRU, spectral_norm_step
from cvg_fast.nn.layout import set_channels_last, video_channels_last
from cvg_fast.ops import (
    backends, gru_sequence, pyramid_down, pyramid_down_reference, sn_normalize,
)
from cvg_fast.ops.gru_cell import _FusedSequence

ROOT = Path(__file__).resolve().parents[1]
CPP = backends.available_backends()["cpp"]
needs_cpp = pytest.mark.skipif(CPP != "ok", reason=CPP)


@pytest.fixture
def backend():
    """Set a backend for the test; back to the default afterwards."""
    yield backends.set_backend
    backends.set_backend(None)


@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_sequence_schedule_gradcheck(channels_last):
    torch.manual_seed(0)
    n, t, c, h, w = 2, 3, 3, 5, 4

    def leaf(*shape):
        return torch.randn(*shape, dtype=torch.float64, requires_grad=True)

    xg, xn, h0 = leaf(n, t, 2 * c, h, w), leaf(n, t, c, h, w), leaf(n, c, h, w)
    wg, wn = leaf(2 * c, c, 3, 3), leaf(c, c, 3, 3)

    def fused(xg, xn, h0, wg, wn):
        return _FusedSequence.apply(xg, xn, h0, wg, wn, wg.detach(), wn.detach(), 1,
                                    "torch-pointwise", channels_last)

    assert torch.autograd.gradcheck(fused, (xg, xn, h0, wg, wn))
    ref = gru_sequence(xg, xn, h0, wg, wn, 1, backend="reference")
    torch.testing.assert_close(fused(xg, xn, h0, wg, wn), ref, rtol=0, atol=1e-12)


def test_gru_sequence_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="gru_sequence: expected xg"):
        gru_sequence(torch.zeros(2, 3, 4, 5, 5), torch.zeros(2, 4, 2, 5, 5),
                     torch.zeros(2, 2, 5, 5), torch.zeros(4, 2, 3, 3), torch.zeros(2, 2, 3, 3), 1)
    with pytest.raises(ValueError, match="weights must be"):
        gru_sequence(torch.zeros(2, 3, 4, 5, 5), torch.zeros(2, 3, 2, 5, 5),
                     torch.zeros(2, 2, 5, 5), torch.zeros(4, 3, 3, 3), torch.zeros(2, 2, 3, 3), 1,
                     backend="cpp")


def _convgru_run(m, x, amp):
    m = copy.deepcopy(m)
    x = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        y = m(x)
    weights = torch.linspace(-1, 1, y.numel()).view(y.shape)
    (y.float() * weights).sum().backward()
    return [y.float().detach(), x.grad] + [p.grad for p in m.parameters()]


def _max_rel(a, b):
    return max(float((p - q).abs().max() / q.abs().max().clamp_min(1e-12)) for p, q in zip(a, b))


@needs_cpp
@pytest.mark.parametrize("channels_last", [False, True])
def test_convgru_cpp_matches_reference(backend, channels_last):
    """fp32: tight. bf16 autocast: the fused step keeps its pointwise math in fp32, so its
    distance to the fp32 result is no worse than the reference's own bf16 distance."""
    torch.manual_seed(0)
    m = ConvGRU(8, 16)
    x = torch.randn(2, 5, 8, 6, 6)
    if channels_last:
        x = video_channels_last(x)
    runs = {}
    for name in ("reference", "cpp"):
        backend(name)
        runs[name, False] = _convgru_run(m, x, False)
        runs[name, True] = _convgru_run(m, x, True)
    for a, b in zip(runs["cpp", False], runs["reference", False]):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)
    truth = runs["reference", False]
    ref_err, fused_err = _max_rel(runs["reference", True], truth), _max_rel(runs["cpp", True], truth)
    assert fused_err <= 1.5 * ref_err + 1e-3, (fused_err, ref_err)
    assert fused_err < 0.05


def _level_step(cfg, level, G0, D0, channels_last):
    """One G forward + D scores + backward; returns output, scores and every gradient."""
    G, D = copy.deepcopy(G0), copy.deepcopy(D0)
    set_channels_last(G, channels_last)
    set_channels_last(D, channels_last)
    g = torch.Generator().manual_seed(1)
    y = torch.tensor([0, 1])
    if level == 1:
        lv = cfg.levels[0]
        args = (torch.randn(2, cfg.z_dim, generator=g), y, None,
                torch.randn(2, lv.frames, cfg.z_t_dim, generator=g))
        x_low = None
    else:
        prev, t_in = cfg.levels[level - 2], cfg.window(level)
        x_low = torch.rand(2, t_in, 3, prev.size, prev.size, generator=g) * 2 - 1
        noise = torch.randn(2, t_in * cfg.t_factor(level), cfg.z_ch, prev.size, prev.size,
                            generator=g)
        args = (x_low, noise, y)
    with spectral_norm_step(G), spectral_norm_step(D):
        video = G(*args)
        scores = D(video, x_low, y, torch.Generator().manual_seed(2))
    loss = video.float().square().mean() + sum(s.float().mean() for s in scores.values())
    loss.backward()
    grads = [p.grad for p in list(G.parameters()) + list(D.parameters()) if p.grad is not None]
    return [video.detach()] + [s.detach() for s in scores.values()] + grads


@needs_cpp
@pytest.mark.parametrize("level", [1, 2])
def test_models_switch_backend_same_outputs(backend, level):
    """The acceptance test: the whole level (G, then every D on G's output, backward) on the
    reference backend and on the C++ kernels (ConvGRU sequence, pyramid), both layouts."""
    cfg = narrow_tiny()
    torch.manual_seed(0)
    G0, D0 = build_generator(cfg, level, 2), build_discriminator(cfg, level, 2)
    for cl in (False, True):
        backend("reference")
        ref = _level_step(cfg, level, G0, D0, cl)
        backend("cpp")
        assert backends.resolve_backend("gru_cell", "cpu") == "cpp"
        assert backends.resolve_backend("pyramid_down", "cpu") == "cpp"
        fused = _level_step(cfg, level, G0, D0, cl)
        assert len(fused) == len(ref) > 10
        for a, b in zip(fused, ref):
            torch.testing.assert_close(a, b, atol=5e-5, rtol=5e-4)


@needs_cpp
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_pyramid_dispatch_forward_and_gradient(backend, dtype):
    """Fused forward equals the reference; its backward (torch's antialiased adjoint per
    level) equals autograd through the reference, every level's gradient summed."""
    torch.manual_seed(0)
    x = torch.randn(3, 2, 16, 24, dtype=dtype)
    wts = [torch.randn(3, 2, 16 >> k, 24 >> k, dtype=torch.float64) for k in (1, 2, 3)]
    outs = {}
    for name in ("reference", "cpp"):
        xi = x.clone().requires_grad_(True)
        levels = pyramid_down(xi, 3, backend=name)
        assert [tuple(o.shape) for o in levels] == [(3, 2, 8, 12), (3, 2, 4, 6), (3, 2, 2, 3)]
        assert all(o.dtype == dtype for o in levels)
        sum((o.double() * w).sum() for o, w in zip(levels, wts)).backward()
        outs[name] = [o.detach().double() for o in levels] + [xi.grad.double()]
    tol = dict(atol=1e-2, rtol=1e-2) if dtype == torch.bfloat16 else dict(atol=1e-6, rtol=1e-6)
    for a, b in zip(outs["cpp"], outs["reference"]):
        torch.testing.assert_close(a, b, **tol)
    ref32 = pyramid_down_reference(x, 3)
    torch.testing.assert_close(outs["cpp"][2].float(), ref32[2], **tol)


@needs_cpp
@pytest.mark.parametrize("update", [True, False])
def test_sn_normalize_fused_matches_reference(backend, update):
    """W/sigma, the in-place u, v step and dW: fused kernel vs reference, conv and linear
    weights; float64 weights stay on the reference (the kernels are fp32)."""
    torch.manual_seed(0)
    for shape in [(8, 4, 3, 3), (6, 5, 3, 3, 3), (7, 11)]:
        w0 = torch.randn(*shape)
        o, i = shape[0], w0[0].numel()
        u0 = torch.nn.functional.normalize(torch.randn(o), dim=0)
        v0 = torch.nn.functional.normalize(torch.randn(i), dim=0)
        g = torch.randn(*shape)
        res = {}
        for name in ("reference", "cpp"):
            w, u, v = w0.clone().requires_grad_(True), u0.clone(), v0.clone()
            out = sn_normalize(w, u, v, update, backend=name)
            (out * g).sum().backward()
            res[name] = (out.detach(), w.grad, u, v)
        for a, b in zip(res["cpp"], res["reference"]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())
        assert torch.equal(res["cpp"][2], u0) == (not update)
    w64 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    u, v = torch.ones(4, dtype=torch.float64) / 2, torch.ones(3, dtype=torch.float64) / 3 ** 0.5
    assert torch.autograd.gradcheck(lambda w: sn_normalize(w, u.clone(), v.clone(), False,
                                                           backend="cpp"), (w64,))
    with pytest.raises(ValueError, match="u must be"):
        sn_normalize(torch.zeros(4, 3), torch.zeros(3), torch.zeros(3), True)


def test_pyramid_down_errors():
    with pytest.raises(ValueError, match="cannot be halved 3 times"):
        pyramid_down(torch.zeros(1, 1, 12, 8), 3)
    with pytest.raises(ValueError, match="expects frames"):
        pyramid_down(torch.zeros(1, 1, 1, 8, 8), 1)
    with pytest.raises(ValueError, match="floating-point frames"):
        pyramid_down(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), 1)


_TRITON_SCRIPT = r"""
import copy, torch
from cvg_fast.nn import ConvGRU
from cvg_fast.nn.layout import video_channels_last
from cvg_fast.ops import backends, pyramid_down
assert backends.resolve_backend("gru_cell", "cpu") == "triton"
assert backends.resolve_backend("pyramid_down", "cpu") == "triton"
assert backends.resolve_backend("sn_power_iteration", "cpu") == "triton"
torch.manual_seed(0)
m = ConvGRU(4, 8)
x0 = video_channels_last(torch.randn(2, 3, 4, 4, 4))
res = {}
for name in ("reference", "triton"):
    backends.set_backend(name)
    mm, x = copy.deepcopy(m), x0.clone().requires_grad_(True)
    y = mm(x)
    (y * torch.linspace(-1, 1, y.numel()).view(y.shape)).sum().backward()
    p = pyramid_down(x0.reshape(6, 4, 4, 4), 2)
    res[name] = [y.detach(), x.grad] + [q.grad for q in mm.parameters()] + p
for a, b in zip(res["triton"], res["reference"]):
    torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)
print("TRITON-MODELS-OK", len(res["triton"]))
"""


def test_models_switch_to_triton_in_the_interpreter():
    """CVG_BACKEND=triton: the ConvGRU and the pyramid run the Triton kernels (CPU tensors,
    TRITON_INTERPRET=1 in a subprocess) and match the reference."""
    from cvg_fast.kernels import gru_blend

    if not gru_blend.HAS_TRITON:
        pytest.skip("triton not installed")
    env = {**os.environ, "TRITON_INTERPRET": "1", "CVG_BACKEND": "triton"}
    proc = subprocess.run([sys.executable, "-c", _TRITON_SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"TRITON-MODELS-OK (\d+)", proc.stdout), proc.stdout
