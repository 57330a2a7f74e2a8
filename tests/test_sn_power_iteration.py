"""sn_power_iteration (one fused spectral-norm power iteration + sigma) against the reference.

Backends: the native op torch.ops.cvg_fast.sn_power_iteration (C++ on CPU; CUDA where a
GPU and a CUDA build exist) and the Triton launcher kernels/sn_power_iteration.py. The
Triton kernels run on CPU tensors only in the interpreter, and TRITON_INTERPRET=1 must be
set before they are defined, so `test_triton_in_interpreter` reruns this file's Triton
cases in a subprocess with the variable set; with a GPU they run on CUDA directly.

Reference (cvg_fast/nn/spectral_norm.py's _power_iteration + sigma):
    u = normalize(W v), v = normalize(W^T u), sigma = u . (W v)
Tolerances: fp32 math against the fp32 torch ops, ~1e-5 relative on sigma (without
update sigma's terms may cancel: 1e-5 of sum |u_o (W v)_o|); u and v elementwise 1e-5
relative + 1e-6 absolute. The GPU's reference mv may run in TF32: CUDA cases use 1e-3.
"""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from conftest import run_in_triton_interpreter

EPS = 1e-12


K = importlib.import_module("cvg_fast.kernels.sn_power_iteration")
TRITON_ON_GPU = K.HAS_TRITON and torch.cuda.is_available() and not K.INTERPRETED
TRITON_DEVICE = "cuda" if TRITON_ON_GPU else "cpu"
needs_triton = pytest.mark.skipif(
    not (K.INTERPRETED or TRITON_ON_GPU), reason="runs in test_triton_in_interpreter's subprocess")


def _native_status() -> str:
    from cvg_fast.ops import backends

    status = backends.available_backends()["cpp"]
    if status != "ok":
        return status
    if not hasattr(torch.ops.cvg_fast, "sn_power_iteration"):
        return "cvg_fast._C was built from older sources without sn_power_iteration: rebuild"
    return "ok"


NATIVE = _native_status()
needs_native = pytest.mark.skipif(NATIVE != "ok", reason=NATIVE)
NATIVE_DEVICES = ["cpu"]
if NATIVE == "ok" and torch.cuda.is_available() and torch.ops.cvg_fast.has_cuda():
    NATIVE_DEVICES.append("cuda")


def native_op(w, u, v, eps=EPS, update=True):
    return torch.ops.cvg_fast.sn_power_iteration(w, u, v, eps, update)


def triton_op(w, u, v, eps=EPS, update=True):
    return K.sn_power_iteration(w, u, v, eps, update)


def ref(w, u, v, eps=EPS, update=True):
    if update:
        u = F.normalize(w @ v, dim=0, eps=eps)
        v = F.normalize(w.t() @ u, dim=0, eps=eps)
    return torch.dot(u, w @ v), u, v


SHAPES = [(1, 1), (3, 5), (64, 27), (256, 1152), (512, 4608)]


def make(shape, layout="contiguous", seed=0, device="cpu"):
    """(w, u, v): w ~ N(0, 1) (a column slice W[:, 3:] of a wider matrix for "slice", a
    transposed contiguous matrix for "transposed"), u, v unit vectors."""
    O, I = shape
    gen = torch.Generator().manual_seed(seed)
    if layout == "slice":
        w = torch.randn(O, I + 3, generator=gen)[:, 3:]
    elif layout == "transposed":
        w = torch.randn(I, O, generator=gen).t()
    else:
        w = torch.randn(O, I, generator=gen)
    u = F.normalize(torch.randn(O, generator=gen), dim=0)
    v = F.normalize(torch.randn(I, generator=gen), dim=0)
    return w.to(device), u.to(device), v.to(device)


def check(op, shape, layout, update, device):
    w, u0, v0 = make(shape, layout, seed=sum(shape), device=device)
    u, v = u0.clone(), v0.clone()
    want_sigma, want_u, want_v = ref(w, u0, v0, update=update)
    scale = (u0 * (w @ v0)).abs().sum() if not update else want_sigma.abs()
    sigma = op(w, u, v, EPS, update)
    assert sigma.shape == () and sigma.dtype == torch.float32 and sigma.device == w.device
    loose = 100 if w.device.type == "cuda" else 1  # TF32 in the GPU's reference mv
    torch.testing.assert_close(sigma, want_sigma, rtol=0, atol=1e-5 * loose * float(scale) + 1e-7)
    if update:
        torch.testing.assert_close(u, want_u, rtol=1e-5 * loose, atol=1e-6 * loose)
        torch.testing.assert_close(v, want_v, rtol=1e-5 * loose, atol=1e-6 * loose)
    else:  # u, v untouched
        assert torch.equal(u, u0) and torch.equal(v, v0)


def check_zero_weight(op, device):
    """W = 0: W v = 0 normalises to 0 through eps (0 / eps), so do v and sigma."""
    w = torch.zeros(7, 9, device=device)
    u, v = torch.ones(7, device=device), torch.ones(9, device=device)
    want_sigma, want_u, want_v = ref(w, u.clone(), v.clone())
    sigma = op(w, u, v, EPS, True)
    assert torch.equal(u, want_u) and torch.equal(v, want_v) and float(sigma) == float(want_sigma) == 0


def spiked(O, I, device, seed=0):
    """A matrix with singular values 2, 1.5, then <= 1: power iteration converges at
    (1.5 / 2)^2 per step. (Gaussian matrices' top gaps are too small for 10 steps.)"""
    gen = torch.Generator().manual_seed(seed)
    k = min(O, I)
    q1, _ = torch.linalg.qr(torch.randn(O, k, generator=gen, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(I, k, generator=gen, dtype=torch.float64))
    s = torch.rand(k, generator=gen, dtype=torch.float64)
    s[0], s[1] = 2.0, 1.5
    return ((q1 * s) @ q2.t()).float().to(device)


def check_converges(op, device):
    w = spiked(96, 200, device)
    gen = torch.Generator().manual_seed(1)
    u = F.normalize(torch.randn(96, generator=gen), dim=0).to(device)
    v = F.normalize(torch.randn(200, generator=gen), dim=0).to(device)
    for _ in range(10):
        sigma = op(w, u, v, EPS, True)
    want = torch.linalg.matrix_norm(w.double(), 2).item()
    assert abs(float(sigma) - want) <= 1e-3 * want, (float(sigma), want)
    # without update: the same sigma from the converged u, v
    assert abs(float(op(w, u, v, EPS, False)) - float(sigma)) <= 1e-5 * want


def _on(device, *ts):
    return tuple(t.to(device) for t in ts)


BAD_INPUTS = [  # (what, device -> (w, u, v), match); made on the device, so views stay views
    ("double w", lambda d: _on(d, torch.randn(4, 6, dtype=torch.float64), torch.randn(4),
                               torch.randn(6)),
     r"w must be float32, got .*(Double|float64)"),
    ("half u", lambda d: _on(d, torch.randn(4, 6), torch.randn(4).half(), torch.randn(6)),
     r"u must be float32, got .*(Half|float16)"),
    ("u too long", lambda d: _on(d, torch.randn(4, 6), torch.randn(5), torch.randn(6)),
     r"u has shape .*5.* expected \(4,\)"),
    ("v too short", lambda d: _on(d, torch.randn(4, 6), torch.randn(4), torch.randn(5)),
     r"v has shape .*5.* expected \(6,\)"),
    ("3D w", lambda d: _on(d, torch.randn(4, 2, 3), torch.randn(4), torch.randn(6)),
     r"w must be 2D"),
    ("strided v", lambda d: (*_on(d, torch.randn(4, 6), torch.randn(4)),
                             torch.randn(12, device=d)[::2]),
     r"must be contiguous"),
]


def check_bad_input(op, exc, make_args, match, device):
    w, u, v = make_args(device)
    with pytest.raises(exc, match=match) as info:
        op(w, u, v, EPS, True)
    assert "\n" not in str(info.value).strip(), f"not one line: {info.value}"


# ---- native: C++ (CPU) and CUDA ------------------------------------------------------------


@needs_native
@pytest.mark.parametrize("device", NATIVE_DEVICES)
@pytest.mark.parametrize("update", (True, False), ids=("update", "no_update"))
@pytest.mark.parametrize("layout", ("contiguous", "slice", "transposed"))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_native_matches_reference(shape, layout, update, device):
    check(native_op, shape, layout, update, device)


@needs_native
@pytest.mark.parametrize("device", NATIVE_DEVICES)
def test_native_large_two_launch_path(device):
    """1024 x 4608 (> 1M elements: several row blocks on CPU, two launches on GPU)."""
    check(native_op, (1024, 4608), "slice", True, device)
    check(native_op, (1024, 4608), "contiguous", False, device)


@needs_native
@pytest.mark.parametrize("device", NATIVE_DEVICES)
def test_native_zero_weight(device):
    check_zero_weight(native_op, device)


@needs_native
@pytest.mark.parametrize("device", NATIVE_DEVICES)
def test_native_converges_to_spectral_norm(device):
    check_converges(native_op, device)


@needs_native
def test_native_cpu_deterministic_across_threads():
    """Row blocks are fixed by the shape: same bits at 1 and 2 threads, and on reruns."""
    w, u0, v0 = make((1024, 4608), seed=3)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 2):
            torch.set_num_threads(n)
            u, v = u0.clone(), v0.clone()
            results.append((native_op(w, u, v), u, v))
    finally:
        torch.set_num_threads(threads)
    for sigma, u, v in results[1:]:
        assert torch.equal(sigma, results[0][0]) and torch.equal(u, results[0][1])
        assert torch.equal(v, results[0][2])


@needs_native
@pytest.mark.parametrize("what,make_args,match", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_native_bad_inputs(what, make_args, match):
    check_bad_input(native_op, RuntimeError, make_args, match, "cpu")


@needs_native
def test_native_meta_and_opcheck():
    w, u, v = (torch.empty(s, device="meta") for s in ((8, 5), (8,), (5,)))
    sigma = native_op(w, u, v)
    assert sigma.device.type == "meta" and sigma.shape == () and sigma.dtype == torch.float32
    with pytest.raises(RuntimeError, match="v has shape"):
        native_op(w, u, u)
    w, u, v = make((64, 27), "slice")
    for update in (True, False):
        torch.library.opcheck(torch.ops.cvg_fast.sn_power_iteration.default,
                              (w, u.clone(), v.clone(), EPS, update),
                              test_utils=("test_schema", "test_faketensor"))


# ---- Triton (interpreter on CPU, or a GPU) --------------------------------------------------


@needs_triton
@pytest.mark.parametrize("update", (True, False), ids=("update", "no_update"))
@pytest.mark.parametrize("layout", ("contiguous", "slice", "transposed"))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_triton_matches_reference(shape, layout, update):
    check(triton_op, shape, layout, update, TRITON_DEVICE)


@needs_triton
def test_triton_zero_weight():
    check_zero_weight(triton_op, TRITON_DEVICE)


@needs_triton
def test_triton_converges_to_spectral_norm():
    check_converges(triton_op, TRITON_DEVICE)


@needs_triton
@pytest.mark.parametrize("what,make_args,match", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_triton_bad_inputs(what, make_args, match):
    check_bad_input(triton_op, ValueError, make_args, match, TRITON_DEVICE)


def test_triton_in_interpreter():
    """Reruns this file's Triton cases under TRITON_INTERPRET=1 in a subprocess (CPU)."""
    if K.INTERPRETED:
        pytest.skip("already in the interpreter: the cases run here directly")
    if not K.HAS_TRITON:
        pytest.skip("triton not installed")
    run_in_triton_interpreter(__file__, "test_triton_ and not test_triton_in_interpreter",
                              min_passed=38)
