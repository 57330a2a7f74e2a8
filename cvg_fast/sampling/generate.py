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

import numpy as np
import torch

from cvg_fast.errors import CvgError
from cvg_fast.models import Cascade, frame_noise, video_noise
from cvg_fast.models.checkpoint import load_cascade
from cvg_fast.ops import downsample_to


@dataclass
class GenerationStats:
    """What a generate() call measured."""

    frames: int
    size: int
    seconds: float = 0.0
    # per upscaling level: mean |downsample(x̂^l) - x̂^{l-1}| on a [0, 1] scale
    matching_error: dict[int, float] = field(default_factory=dict)

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


def _resolve_classes(cascade: Cascade, num_videos: int, classes) -> list[int] | None:
    nc = cascade.num_classes
    if nc == 0:
        if classes is not None:
            raise CvgError("this cascade is unconditional: do not pass classes")
        return None
    if classes is None:
        return [i % nc for i in range(num_videos)]
    if isinstance(classes, int):
        classes = [classes] * num_videos
    classes = [int(c) for c in classes]
    if len(classes) != num_videos:
        raise CvgError(f"classes has {len(classes)} entries for {num_videos} videos: give one "
                       f"per video or a single class")
    bad = [c for c in classes if not 0 <= c < nc]
    if bad:
        raise CvgError(f"class {bad[0]} is out of range: this cascade has classes 0..{nc - 1}")
    return classes


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, T, 3, H, W) in [-1, 1] -> uint8 (N, T, H, W, 3)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(
        0, 1, 3, 4, 2).cpu().numpy()


def generate(cascade: Cascade | str | os.PathLike, num_videos: int = 1, frames: int | None = None,
             classes=None, seed: int = 0, device: str | torch.device | None = None,
             out: str | os.PathLike | None = None, batch_size: int = 8, fps: int | None = None,
             levels: int | None = None, overlap: float = 0.0, progress: bool = True,
             return_stats: bool = False):
    """Sample `num_videos` videos of `frames` frames from a trained cascade.

    cascade: a Cascade or a run folder. frames: output length at the top level
    (default: its training length; any length >= 1 works). classes: None (video
    i gets class i mod num_classes), one int, or one per video. levels: stop at
    this level (default: all trained). overlap: fraction of each upscaler window
    (0 to 0.5) shared with the next and cross-faded: smoother window seams for
    up to 2x upscaler work (0 = the paper's back-to-back windows).
    Returns uint8 (N, F, H, W, 3), or the list of .mp4 paths when `out` is
    given; with return_stats=True, also a GenerationStats (timings and the
    per-level matching error).
    """
    if not isinstance(cascade, Cascade):
        cascade = load_cascade(cascade, device=device)
    if levels is not None:
        if not 1 <= levels <= cascade.num_levels:
            raise CvgError(f"levels={levels}: this cascade has levels 1..{cascade.num_levels}")
        cascade = Cascade(cascade.cfg, list(cascade.generators)[:levels], cascade.num_classes)
    cfg, top = cascade.cfg, cascade.num_levels
    if frames is None:
        frames = cfg.levels[top - 1].frames
    if not isinstance(frames, (int, np.integer)) or isinstance(frames, bool) or frames < 1:
        raise CvgError(f"frames must be a whole number >= 1, got {frames!r}")
    if not isinstance(num_videos, (int, np.integer)) or num_videos < 1:
        raise CvgError(f"num_videos must be >= 1, got {num_videos!r}")
    if batch_size < 1:
        raise CvgError(f"batch_size must be >= 1, got {batch_size}")
    if not 0.0 <= overlap <= 0.5:
        raise CvgError(f"overlap must be a fraction between 0 and 0.5, got {overlap}")
    labels = _resolve_classes(cascade, num_videos, classes)
    device = torch.device(device) if device is not None else next(cascade.parameters()).device
    cascade.to(device).eval()
    tf = cascade.total_t_factor()
    frames1 = math.ceil(frames / tf)
    size = cfg.levels[top - 1].size
    fps = fps or cfg.fps
    stats = GenerationStats(frames=frames * num_videos, size=size)
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
            z = video_noise(seed, ids, cfg.z_dim).to(device)
            y = torch.tensor([labels[i] for i in ids], device=device) if labels else None

            def noise(level, t_a, t_b, shape, ids=ids):
                return frame_noise(seed, ids, level, t_a, t_b, shape)

            writers = []
            if out is not None:
                for i in ids:
                    name = f"video_{i:04d}" + (f"_class{labels[i]}" if labels else "") + ".mp4"
                    paths.append(out / name)
                    writers.append(VideoWriter(out / name, fps=fps).__enter__())
            try:
                done = 0
                with torch.inference_mode():
                    for chunk in cascade.stream(z, y, frames1, noise, on_window=matching,
                                                overlap=overlap):
                        chunk = chunk[:, : frames - done]
                        if chunk.shape[1] == 0:
                            break
                        arr = _to_uint8(chunk)
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
