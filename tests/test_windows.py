"""Sliding-window upscaling: window starts, stitching, overlap cuts, bounded streaming."""

import pytest
import torch

from cvg_fast.models import stream_upscale, window_starts


@pytest.mark.parametrize("total,window,overlap",
                         [(8, 4, 0), (10, 4, 0), (3, 4, 0), (1, 1, 0), (17, 6, 0), (48, 12, 0),
                          (8, 4, 2), (17, 6, 3), (23, 4, 1)])
def test_windows_cover_every_frame(total, window, overlap):
    starts = window_starts(total, window, overlap)
    w = min(window, total)
    assert starts[0] == 0 and starts[-1] + w == total
    assert all(b > a for a, b in zip(starts, starts[1:]))
    assert all(b - a <= w - overlap for a, b in zip(starts, starts[1:]))  # no gaps
    with pytest.raises(ValueError, match="overlap"):
        window_starts(total, window, w // 2 + 1)


def _identity_upscaler(tf, seen):
    # output frames 2t, 2t+1 = 10 * input t; window content must not matter
    def upscale(xw, ranges):
        assert xw.shape[0] == len(ranges)  # one video: one row per window position
        for (t0, t1), row in zip(ranges, xw):
            assert t1 - t0 == xw.shape[1] * tf
            # the window's content is its input frames t0/tf .. t1/tf
            torch.testing.assert_close(row[:, 0, 0, 0], torch.arange(t0 // tf, t1 // tf,
                                                                     dtype=torch.float32))
            seen.append(xw.shape[1])
        return (xw * 10).repeat_interleave(tf, dim=1)
    return upscale


@pytest.mark.parametrize("chunk", [1, 3, 100])
@pytest.mark.parametrize("overlap", [0, 1, 2])
@pytest.mark.parametrize("positions", [1, 2, 5])
def test_stream_equals_framewise_map(chunk, overlap, positions):
    total, window, tf = 23, 4, 2
    x = torch.arange(total, dtype=torch.float32).view(1, total, 1, 1, 1)
    seen = []
    chunks = (x[:, i: i + chunk] for i in range(0, total, chunk))
    pieces = list(stream_upscale(_identity_upscaler(tf, seen), chunks, total, window, tf,
                                 overlap=overlap, positions=positions))
    out = torch.cat(pieces, dim=1)
    assert out.shape[1] == total * tf
    # cross-fading two windows that agree leaves the frames unchanged
    torch.testing.assert_close(out[0, :, 0, 0, 0], (x[0, :, 0, 0, 0] * 10).repeat_interleave(tf))
    assert len(seen) == len(window_starts(total, window, overlap))
    assert max(p.shape[1] for p in pieces) <= window * tf  # one window of output at a time
    with pytest.raises(ValueError, match="positions"):
        list(stream_upscale(_identity_upscaler(tf, []), [x], total, window, tf, positions=0))


def test_overlapping_windows_are_cut_in_the_middle_of_the_shared_frames():
    """Each output frame comes from the window it is more central in, never a blend: a blend
    of two renderings is a ghost, and a window's last frames (held) are its worst."""
    count = iter(range(100))

    def upscale(xw, ranges):  # window i outputs the constant i
        return torch.cat([torch.full((1, t1 - t0, 1, 1, 1), float(next(count)))
                          for t0, t1 in ranges])

    out = torch.cat(list(stream_upscale(upscale, [torch.zeros(1, 8, 1, 1, 1)], 8, 4, 1,
                                        overlap=2)), dim=1)[0, :, 0, 0, 0]
    # windows [0,4) [2,6) [4,8): shared frames 2,3 -> cut after 2; shared 4,5 -> cut after 4
    assert out.tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    count = iter(range(100))
    out = torch.cat(list(stream_upscale(upscale, [torch.zeros(1, 6, 1, 1, 1)], 6, 4, 2,
                                        overlap=2)), dim=1)[0, :, 0, 0, 0]
    # t_factor 2: windows [0,4) [2,6) share input frames 2,3 = output frames 4..7; cut at 6
    assert out.tolist() == [0] * 6 + [1] * 6


def test_stream_reports_windows_and_detects_short_input():
    x = torch.zeros(1, 5, 1, 1, 1)
    calls = []
    list(stream_upscale(lambda xw, r: xw.repeat_interleave(2, 1), [x], 5, 2, 2,
                        on_window=lambda a, b: calls.append((a.shape[1], b.shape[1]))))
    assert calls == [(2, 4)] * 3
    with pytest.raises(ValueError, match="ended"):
        list(stream_upscale(lambda xw, r: xw, [x[:, :3]], 5, 2, 1))
