"""Long-video sampling: level 1 once, upscalers streamed over sliding windows.

    cascade = cvg_fast.load_cascade("runs/tiny")
    videos = cvg_fast.generate(cascade, num_videos=4, frames=64)   # uint8 (4, 64, H, W, 3)
    paths = cvg_fast.generate(cascade, frames=4800, out="samples/")  # .mp4 files, streamed

With `out`, finished frames go to the video writers as each window is done:
memory holds the level-1 video (small) and the windows in flight, never the
whole high-resolution video, so it does not grow with `frames`.
Video i's noise depends only on (seed, i): it is the same alone or in a batch.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from cvg_fast.errors import CvgError
from cvg_fast.models import Cascade, frame_noise, video_noise
from cvg_fast.models.checkpoint import load_cascade
from cvg_fast.nn.layout import set_channels_last
from cvg_fast.nn.precision import resolve_precision
from cvg_fast.ops import downsample_to


@dataclass
class GenerationStats:
    """What a generate() call measured."""

    frames: int
    size: int
    seconds: float = 0.0
    # per upscaling level: mean |downsample(x̂^l) - x̂^{l-1}| on a [0, 1] scale
    matching_error: dict[int, float] = field(default_factory=dict)
    precision: str = ""  # PrecisionSettings.describe() of the run

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds else float("nan")


class _MatchingError:
    """Accumulates per-level mean absolute error between each window and its input."""

    def __init__(self):
        self.sum: dict[int, float] = {}
        self.count: dict[int, int] = {}

    def __call__(self, level: int, x_in: torch.Tensor, y_out: torch.Tensor) -> None:
        down = downsample_to(y_out.float(), x_in.shape[1], x_in.shape[-1])
        err = (down - x_in.float()).abs()
        self.sum[level] = self.sum.get(level, 0.0) + float(err.sum()) / 2.0  # [-1,1] -> [0,1]
        self.count[level] = self.count.get(level, 0) + err.numel()

    def result(self) -> dict[int, float]:
        return {lv: self.sum[lv] / self.count[lv] for lv in sorted(self.sum)}


def _resolve_classes(cascade: Cascade, num_videos: int, classes,
                     first: int = 0) -> list[int] | None:
    """Class of every video id 0..num_videos-1; `classes` covers ids first.. (default: i mod K)."""
    nc = cascade.num_classes
    if nc == 0:
        if classes is not None:
            raise CvgError("this cascade is unconditional: do not pass classes")
        return None
    if classes is None:
        return [i % nc for i in range(num_videos)]
    if isinstance(classes, (int, np.integer)):
        classes = [classes] * (num_videos - first)
    classes = [int(c) for c in classes]
    if len(classes) != num_videos - first:
        raise CvgError(f"classes has {len(classes)} entries for {num_videos} videos: give one "
                       f"per video or a single class")
    bad = [c for c in classes if not 0 <= c < nc]
    if bad:
        raise CvgError(f"class {bad[0]} is out of range: this cascade has classes 0..{nc - 1}")
    return [i % nc for i in range(first)] + classes


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, T, 3, H, W) in [-1, 1] -> uint8 (N, T, H, W, 3)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(
        0, 1, 3, 4, 2).cpu().numpy()


def _batch_chunks(cascade: Cascade, ids: list[int], labels: list[int] | None, frames: int,
                  seed: int, device: torch.device, overlap: float,
                  on_window=None, bf16: bool = False) -> Iterator[np.ndarray]:
    """uint8 chunks (B, t, H, W, 3) of videos `ids`, in order, `frames` frames in all."""
    frames1 = math.ceil(frames / cascade.total_t_factor())
    z = video_noise(seed, ids, cascade.level_cfg(1).z_dim).to(device)
    y = torch.tensor([labels[i] for i in ids], device=device) if labels else None

    def noise(level, t_a, t_b, shape):
        return frame_noise(seed, ids, level, t_a, t_b, shape)

    done = 0
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    with torch.inference_mode(), amp:
        for chunk in cascade.stream(z, y, frames1, noise, on_window=on_window, overlap=overlap):
            chunk = chunk[:, : frames - done]
            if chunk.shape[1] == 0:
                break
            done += chunk.shape[1]
            yield _to_uint8(chunk)


def _prepare(cascade, frames, num_videos, batch_size, overlap, levels, device, amp="auto",
             channels_last=None):
    """Checked arguments: (cascade cut to `levels`, frames, device, precision settings);
    the cascade is moved to the device, in eval mode, in the settings' layout."""
    if not isinstance(cascade, Cascade):
        cascade = load_cascade(cascade, device=device)
    if levels is not None:
        if not 1 <= levels <= cascade.num_levels:
            raise CvgError(f"levels={levels}: this cascade has levels 1..{cascade.num_levels}")
        cascade = cascade.truncated(levels)
    if frames is None:
        frames = cascade.cfg.levels[cascade.num_levels - 1].frames
    if not isinstance(frames, (int, np.integer)) or isinstance(frames, bool) or frames < 1:
        raise CvgError(f"frames must be a whole number >= 1, got {frames!r}")
    if not isinstance(num_videos, (int, np.integer)) or num_videos < 1:
        raise CvgError(f"num_videos must be >= 1, got {num_videos!r}")
    if batch_size < 1:
        raise CvgError(f"batch_size must be >= 1, got {batch_size}")
    if not 0.0 <= overlap <= 0.5:
        raise CvgError(f"overlap must be a fraction between 0 and 0.5, got {overlap}")
    device = torch.device(device) if device is not None else next(cascade.parameters()).device
    cascade.to(device).eval()
    precision = resolve_precision(device, amp, channels_last)
    set_channels_last(cascade, precision.channels_last)
    return cascade, int(frames), device, precision


def iter_videos(cascade: Cascade | str | os.PathLike, num_videos: int, frames: int | None = None,
                classes=None, seed: int = 0, device: str | torch.device | None = None,
                batch_size: int = 8, levels: int | None = None, overlap: float = 0.0,
                first: int = 0, amp: str = "auto", channels_last: bool | None = None
                ) -> Iterator[tuple[np.ndarray, list[int] | None]]:
    """Videos `first`..`first + num_videos - 1` as batches: (uint8 (B, F, H, W, 3), labels).

    The same videos `generate` makes for the same seed (video i's noise depends only on
    (seed, i)); only one batch is resident, which is what the metrics stream over.
    labels: the class of each video of the batch (None for an unconditional cascade).
    amp, channels_last: as for `generate`.
    """
    cascade, frames, device, precision = _prepare(cascade, frames, num_videos, batch_size,
                                                  overlap, levels, device, amp, channels_last)
    labels = _resolve_classes(cascade, first + num_videos, classes, first)
    for b0 in range(first, first + num_videos, batch_size):
        ids = list(range(b0, min(b0 + batch_size, first + num_videos)))
        arr = np.concatenate(list(_batch_chunks(cascade, ids, labels, frames, seed, device,
                                                overlap, bf16=precision.amp == "bf16")), axis=1)
        yield arr, ([labels[i] for i in ids] if labels else None)


def generate(cascade: Cascade | str | os.PathLike, num_videos: int = 1, frames: int | None = None,
             classes=None, seed: int = 0, device: str | torch.device | None = None,
             out: str | os.PathLike | None = None, batch_size: int = 8, fps: int | None = None,
             levels: int | None = None, overlap: float = 0.0, progress: bool = True,
             return_stats: bool = False, amp: str = "auto", channels_last: bool | None = None):
    """Sample `num_videos` videos of `frames` frames from a trained cascade.

    cascade: a Cascade or a run folder. frames: output length at the top level
    (default: its training length; any length >= 1 works). classes: None (video
    i gets class i mod num_classes), one int, or one per video. levels: stop at
    this level (default: all trained). overlap: fraction of each upscaler window
    (0 to 0.5) shared with the next, each frame taken from the window it is more
    central in: no held window-end frames at the seams, for
    up to 2x upscaler work (0 = the paper's back-to-back windows).
    Returns uint8 (N, F, H, W, 3), or the list of .mp4 paths when `out` is
    given; with return_stats=True, also a GenerationStats (timings and the
    per-level matching error). amp: "auto" (bf16 where the device computes it natively),
    "none" (fp32) or "bf16"; channels_last: None (the device's fastest), True or False
    (cvg_fast.nn.precision).
    """
    cascade, frames, device, precision = _prepare(cascade, frames, num_videos, batch_size,
                                                  overlap, levels, device, amp, channels_last)
    labels = _resolve_classes(cascade, num_videos, classes)
    cfg, top = cascade.cfg, cascade.num_levels
    size = cfg.levels[top - 1].size
    fps = fps or cfg.fps
    stats = GenerationStats(frames=frames * num_videos, size=size,
                            precision=precision.describe())
    matching = _MatchingError()
    paths: list[Path] = []
    result = None if out is not None else np.empty((num_videos, frames, size, size, 3), np.uint8)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        from cvg_fast.data.video_io import VideoWriter

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=frames * num_videos, desc=f"generate {size}px", unit="frame",
                   dynamic_ncols=True)
    t0 = time.time()
    try:
        for b0 in range(0, num_videos, batch_size):
            ids = list(range(b0, min(b0 + batch_size, num_videos)))
            writers = []
            if out is not None:
                for i in ids:
                    name = f"video_{i:04d}" + (f"_class{labels[i]}" if labels else "") + ".mp4"
                    paths.append(out / name)
                    writers.append(VideoWriter(out / name, fps=fps).__enter__())
            try:
                done = 0
                for arr in _batch_chunks(cascade, ids, labels, frames, seed, device, overlap,
                                         matching, bf16=precision.amp == "bf16"):
                    if out is None:
                        result[ids[0]: ids[-1] + 1, done: done + arr.shape[1]] = arr
                    else:
                        for w, a in zip(writers, arr):
                            w.write(a)
                    done += arr.shape[1]
                    if bar is not None:
                        bar.update(arr.shape[1] * len(ids))
            except BaseException as e:
                for w in writers:
                    w.__exit__(type(e), e, e.__traceback__)
                raise
            for w in writers:
                w.__exit__(None, None, None)
    finally:
        if bar is not None:
            bar.close()
    stats.seconds = time.time() - t0
    stats.matching_error = matching.result()
    output = paths if out is not None else result
    return (output, stats) if return_stats else output
