"""Sliding-window upscaling: plan, stitching, streaming with bounded buffers."""

import pytest
import torch

from cvg_fast.models import stream_upscale, window_plan


@pytest.mark.parametrize("total,window", [(8, 4), (10, 4), (3, 4), (1, 1), (17, 6), (48, 12)])
def test_plan_covers_every_frame_once(total, window):
    plan = window_plan(total, window)
    emitted = []
    for start, keep in plan:
        w = min(window, total)
        assert 0 <= start <= keep < start + w <= total
        emitted += list(range(keep, start + w))
    assert emitted == list(range(total))


@pytest.mark.parametrize("chunk", [1, 3, 100])
def test_stream_equals_framewise_map_and_buffers_stay_small(chunk):
    # an "upscaler" that doubles time: output frame 2t, 2t+1 = 10 * input t (+ frame-index tag)
    total, window, tf = 23, 4, 2
    x = torch.arange(total, dtype=torch.float32).view(1, total, 1, 1, 1)
    seen = []

    def upscale(xw, t0, t1):
        assert xw.shape[1] == window and t1 - t0 == window * tf
        seen.append(xw.shape[1])
        return (xw * 10).repeat_interleave(tf, dim=1) + torch.arange(t0, t1).view(1, -1, 1, 1, 1) * 0

    chunks = (x[:, i: i + chunk] for i in range(0, total, chunk))
    out = torch.cat(list(stream_upscale(upscale, chunks, total, window, tf)), dim=1)
    assert out.shape[1] == total * tf
    torch.testing.assert_close(out[0, :, 0, 0, 0], (x[0, :, 0, 0, 0] * 10).repeat_interleave(tf))
    assert len(seen) == len(window_plan(total, window))


def test_stream_reports_windows_and_detects_short_input():
    x = torch.zeros(1, 5, 1, 1, 1)
    calls = []
    list(stream_upscale(lambda xw, a, b: xw.repeat_interleave(2, 1), [x], 5, 2, 2,
                        on_window=lambda a, b: calls.append((a.shape[1], b.shape[1]))))
    assert calls == [(2, 4)] * 3
    with pytest.raises(ValueError, match="ended"):
        list(stream_upscale(lambda xw, a, b: xw, [x[:, :3]], 5, 2, 1))
