"""Sliding an upscaler over a whole video, window by window.

An upscaler trained on windows of w input frames runs at inference on windows
[0, w), [w, 2w), ...; when w does not divide T the last window is aligned to
the end, [T - w, T), and only its new output frames are kept. Each window
maps w input frames to w * t_factor output frames. `stream_upscale` consumes
its input as a stream of chunks and yields output chunks in order, holding at
most one window (+ one input chunk) — memory does not grow with video length.
Training uses the same function (and collects the stream) to build the
inputs of level l from the frozen levels below.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import torch


def window_plan(total: int, window: int) -> list[tuple[int, int]]:
    """[(start, keep_from)] in input frames: window [start, start+w) emits inputs >= keep_from."""
    if total < 1 or window < 1:
        raise ValueError(f"window_plan needs total >= 1 and window >= 1, got {total}, {window}")
    w = min(window, total)
    plan, done = [], 0
    while done < total:
        start = min(done, total - w)
        plan.append((start, done))
        done = start + w
    return plan


WindowFn = Callable[[torch.Tensor, int, int], torch.Tensor]


def stream_upscale(upscale: WindowFn, chunks: Iterable[torch.Tensor], total: int, window: int,
                   t_factor: int,
                   on_window: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
                   ) -> Iterator[torch.Tensor]:
    """Yield output chunks (N, t, C, H, W) of the upscaled stream, in order.

    upscale(x_window, t0, t1): (N, w, C, h, w) input frames -> (N, w*t_factor, ...)
    output frames; t0:t1 is the window's output frame range (for noise keyed by
    frame). chunks: the input video as (N, t_i, C, h, w) pieces summing to `total`.
    on_window(x_window, y_window) sees every window (e.g. for the matching error).
    """
    it = iter(chunks)
    buf: torch.Tensor | None = None  # input frames [buf_start, buf_start + len)
    buf_start = 0
    plan = window_plan(total, window)
    w = min(window, total)
    for i, (start, keep_from) in enumerate(plan):
        while buf is None or buf_start + buf.shape[1] < start + w:
            nxt = next(it, None)
            if nxt is None:
                raise ValueError(f"input stream ended before {start + w} of {total} frames")
            buf = nxt if buf is None else torch.cat([buf, nxt], dim=1)
        xw = buf[:, start - buf_start: start + w - buf_start]
        yw = upscale(xw, start * t_factor, (start + w) * t_factor)
        if on_window is not None:
            on_window(xw, yw)
        yield yw[:, (keep_from - start) * t_factor:]
        if i + 1 < len(plan):  # keep only what the next window needs
            drop = plan[i + 1][0] - buf_start
            buf, buf_start = buf[:, drop:], buf_start + drop
