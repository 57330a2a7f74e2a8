"""LiveTensorTracker: exact peak/current bytes for known allocate/free patterns (CPU)."""

import torch

from cvg_fast.live_tensors import LiveTensorTracker

F32 = 4


def test_one_tensor_exact_and_views_add_nothing():
    with LiveTensorTracker("cpu") as tr:
        a = torch.empty(1000, dtype=torch.float32)
        assert (tr.peak_bytes, tr.current_bytes) == (4000, 4000)
        v1, v2, v3 = a[10:20], a.view(10, 100), a.view(100, 10).t()  # same storage
        assert (tr.peak_bytes, tr.current_bytes) == (4000, 4000)
        b = torch.empty(250, dtype=torch.float64)  # another 2000 bytes
        assert (tr.peak_bytes, tr.current_bytes) == (6000, 6000)
        del a, v1, v2  # v3 still holds a's storage
        assert tr.current_bytes == 6000
        del v3
        assert tr.current_bytes == 2000
        del b
    assert (tr.peak_bytes, tr.current_bytes) == (6000, 0)


def test_freed_then_allocated_again_keeps_peak_two_live_sum():
    with LiveTensorTracker() as tr:
        a = torch.empty(1000)
        del a
        b = torch.empty(1000)  # often at a's address: must replace it, not add or vanish
        assert (tr.peak_bytes, tr.current_bytes) == (4000, 4000)
        c = torch.empty(3000, dtype=torch.uint8)
        assert (tr.peak_bytes, tr.current_bytes) == (7000, 7000)
        del b, c
        d = torch.empty(10, dtype=torch.int64)
        assert (tr.peak_bytes, tr.current_bytes) == (7000, 80)


def test_op_outputs_and_temporaries_counted():
    x = torch.ones(100, 100)  # before entering: not counted, though read inside
    with LiveTensorTracker() as tr:
        y = (x * 2 + 1).sum(0)  # x*2 (40000) and +1 (40000) alive at once, then freed
        assert tr.current_bytes == 100 * F32
        z = x.clone()
        assert tr.current_bytes == 100 * F32 + 40000
    # x*2 and x*2+1 alive at once (80000); x*2 is freed before sum's 400 bytes appear,
    # and the clone comes after both temporaries died: 40400
    assert tr.peak_bytes == 80000
    del y, z


def test_peak_independent_of_loop_length():
    def run(n):
        with LiveTensorTracker() as tr:
            acc = torch.zeros(256)
            for _ in range(n):
                tmp = torch.randn(256, 64)  # 65536 bytes, freed each turn
                acc += tmp.sum(1)
                del tmp
        return tr.peak_bytes, tr.current_bytes

    short, long_ = run(3), run(300)
    assert short == long_
    # acc + one tmp + its row sums (the next tmp is made only after the last is freed)
    assert short == (1024 + 65536 + 1024, 1024)


def test_loop_that_keeps_everything_grows():
    with LiveTensorTracker() as tr:
        kept = [torch.empty(100) for _ in range(50)]
    assert tr.peak_bytes == tr.current_bytes == 50 * 400
    del kept
    assert tr.current_bytes == 0


def test_inference_mode_autocast_and_nested_entry():
    w = torch.randn(64, 32)
    with torch.inference_mode(), LiveTensorTracker() as tr:
        x = torch.ones(16, 64)
        y = x @ w  # fp32: 16 * 32 * 4
        assert tr.current_bytes == 16 * 64 * 4 + 16 * 32 * 4
    assert tr.peak_bytes == 16 * 64 * 4 + 16 * 32 * 4
    del x, y
    with LiveTensorTracker() as tr, torch.inference_mode(), \
            torch.autocast("cpu", dtype=torch.bfloat16):
        x = torch.ones(16, 64)  # fp32 4096
        y = x @ w  # autocast: bf16 copies of x (2048) and w (4096) -> y bf16 (1024)
        assert y.dtype == torch.bfloat16
        del x
    assert tr.peak_bytes == 4096 + 2048 + 4096 + 1024
    assert tr.current_bytes == 1024


def test_tensors_made_before_entering_are_not_counted():
    a = torch.empty(10_000)
    with LiveTensorTracker() as tr:
        b = a[:5000]  # a view: no new storage
        a.add_(1)  # in place: no new storage
        del b
    assert (tr.peak_bytes, tr.current_bytes) == (0, 0)
