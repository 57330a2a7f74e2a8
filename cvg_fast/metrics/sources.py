"""Where the videos a metric scores come from: a run, a bilinear baseline, a real folder.

A source is a callable `source(count, frames)` that yields batches
`(uint8 (B, frames, H, W, 3), labels list[int] | None)` until `count` videos were
given; only one batch is resident, so 2,048 clips of 128 frames never sit in memory.

- `cascade_source`: the cascade's videos through `iter_videos` (the same videos
  `generate()` writes for the same seed); video i has class i mod K when conditional.
- `bilinear_source`: a lower level's output upsampled linearly in time and bilinearly
  in space to the top level's rate and size: what an upscaler that learned nothing gives.
- `folder_source`: real clips of a video folder (held-out data), one per video.

`FolderLengths` says how many real clips of L frames a folder can give, before any is read.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from cvg_fast.errors import CvgError
from cvg_fast.metrics.cache import cache_dir

Batch = tuple[np.ndarray, "list[int] | None"]
VideoSource = Callable[[int, int], Iterator[Batch]]

__all__ = ["Batch", "VideoSource", "FolderLengths", "RealClips", "cascade_source",
           "bilinear_source", "folder_source"]


def cascade_source(cascade, seed: int = 0, batch_size: int = 16, overlap: float = 0.0,
                   levels: int | None = None, amp: str = "auto",
                   channels_last: bool | None = None) -> VideoSource:
    """The videos of a trained cascade (all levels, or up to `levels`); amp and
    channels_last as for `generate` (default: the device's fastest)."""
    from cvg_fast.sampling import iter_videos

    def source(count: int, frames: int) -> Iterator[Batch]:
        yield from iter_videos(cascade, count, frames, seed=seed, batch_size=batch_size,
                               overlap=overlap, levels=levels, amp=amp,
                               channels_last=channels_last)

    return source


def bilinear_source(cascade, level: int, seed: int = 0, batch_size: int = 16,
                    amp: str = "auto", channels_last: bool | None = None) -> VideoSource:
    """Level `level`'s videos brought to the frame rate and size of the config's top level.

    What the cascade would give if every upscaler above `level` had learned nothing.
    """
    from cvg_fast.ops import upsample_to
    from cvg_fast.sampling import iter_videos

    cfg = cascade.cfg
    factor = 1
    for lv in range(level + 1, cfg.num_levels + 1):
        factor *= cascade.t_factor(lv) if lv <= cascade.num_levels else cfg.t_factor(lv)
    size = cfg.levels[-1].size

    def source(count: int, frames: int) -> Iterator[Batch]:
        low_frames = -(-frames // factor)
        for arr, labels in iter_videos(cascade, count, low_frames, seed=seed,
                                       batch_size=batch_size, levels=level, amp=amp,
                                       channels_last=channels_last):
            x = torch.from_numpy(arr).permute(0, 1, 4, 2, 3).float()
            up = upsample_to(x, low_frames * factor, size)[:, :frames]
            yield up.round().clamp(0, 255).to(torch.uint8).permute(0, 1, 3, 4, 2).numpy(), labels

    return source


def _index_path(root: Path) -> Path | None:
    try:
        return cache_dir(root) / "data_index.json"
    except OSError:
        return None  # no writable cache anywhere: probe without one


class FolderLengths:
    """How many clips of L frames (every `stride`-th frame) a folder gives, as `RealClips`
    opens it: without skip_bad one video too short for L fails the whole folder, so
    such an L gets none. `lengths`: clip frames each readable video holds."""

    def __init__(self, root: str | os.PathLike, stride: int = 1, skip_bad: bool = False,
                 progress: bool = False, split: str | None = None, layout: str = "auto"):
        from cvg_fast.data import VideoFolder

        root = Path(root).expanduser().absolute()
        with warnings.catch_warnings():  # skipped files: RealClips warns when it reads them
            warnings.simplefilter("ignore")
            folder = VideoFolder(root, clip_frames=1, size=1, frame_stride=stride,
                                 skip_bad=skip_bad, index_cache=_index_path(root),
                                 progress=progress, split=split, layout=layout)
        self.lengths = sorted(((v.frames - 1) // stride + 1 for v in folder.videos), reverse=True)
        self.root, self.stride, self.skip_bad = root, stride, skip_bad

    def served(self, frames: int) -> int:
        """Real clips of `frames` frames that RealClips can read (one per video)."""
        n = sum(length >= frames for length in self.lengths)
        return n if self.skip_bad or n == len(self.lengths) else 0

    def describe(self) -> str:
        """E.g. "128 videos of 48 frames", "900 videos of 29-1776 frames at stride 2"."""
        lo, hi = self.lengths[-1], self.lengths[0]
        span = f"{hi}" if lo == hi else f"{lo}-{hi}"
        at = f" at stride {self.stride}" if self.stride > 1 else ""
        return f"{len(self.lengths)} videos of {span} frames{at}"


class RealClips:
    """One clip of `frames` frames (every `stride`-th frame) from each of `count` videos.

    Videos are drawn without replacement by a seeded permutation of the usable ones,
    each clip at a seeded random start; frames are resized so the shorter side is
    `size`, then centre-cropped (the training data path). `signature` lists what the
    clips depend on (files with size and mtime), for the statistics cache key.
    """

    def __init__(self, root: str | os.PathLike, frames: int, size: int, stride: int = 1,
                 seed: int = 0, skip_bad: bool = False, progress: bool = False,
                 split: str | None = None, layout: str = "auto"):
        from cvg_fast.data import VideoFolder

        self.root = Path(root).expanduser().absolute()
        self.frames, self.size, self.stride, self.seed = frames, size, stride, seed
        self.skip_bad = skip_bad
        self.folder = VideoFolder(self.root, clip_frames=frames, size=size, frame_stride=stride,
                                  skip_bad=skip_bad, index_cache=_index_path(self.root),
                                  progress=progress, split=split, layout=layout)

    @property
    def available(self) -> int:
        return len(self.folder.videos)

    def signature(self) -> list:
        out = []
        for v in self.folder.videos:
            st = os.stat(v.path)
            out.append([os.path.relpath(v.path, self.root), st.st_size, int(st.st_mtime)])
        return out

    def check(self, count: int) -> None:
        """A one-line CvgError when the folder has fewer usable videos than `count`."""
        n = self.available
        if count > n:
            raise CvgError(
                f"{self.root} has {n} usable videos of at least {self.folder.frames_needed} "
                f"frames but {count} real clips were asked: pass --num-videos {n} or fewer, or "
                f"use a folder with more (or longer) videos")

    def __call__(self, count: int, frames: int | None = None, batch_size: int = 32,
                 ) -> Iterator[Batch]:
        from cvg_fast.data import read_clip

        frames = frames or self.frames
        if frames != self.frames:
            raise ValueError(f"RealClips was opened for {self.frames}-frame clips, not {frames}")
        self.check(count)
        videos = self.folder.videos
        rng = np.random.default_rng([self.seed, frames, self.stride, self.size])
        order = rng.permutation(len(videos))  # clips in this order; the first `count` that read
        starts = [int(rng.integers(0, videos[i].frames - self.folder.frames_needed + 1))
                  for i in order]

        def load(k: int) -> np.ndarray | CvgError:
            try:
                return read_clip(videos[order[k]].path, starts[k], frames, self.stride, self.size)
            except CvgError as e:  # a file damaged past its header: decided by the caller
                if not self.skip_bad:
                    raise
                return e

        bad: list[str] = []
        done, k = 0, 0
        with ThreadPoolExecutor(max_workers=4) as pool:  # PyAV decodes without the GIL
            while done < count:
                ks = list(range(k, min(k + batch_size, k + count - done, len(order))))
                if not ks:
                    raise CvgError(f"{self.root}: only {done} of {count} real clips could be "
                                   f"read ({len(bad)} damaged videos, e.g. {bad[0]}); pass a "
                                   f"smaller --num-videos or repair the files")
                k += len(ks)
                got = list(pool.map(load, ks))
                ok = [j for j, clip in zip(ks, got) if not isinstance(clip, CvgError)]
                bad += [str(clip) for clip in got if isinstance(clip, CvgError)]
                if ok:
                    arr = np.stack([clip for clip in got if not isinstance(clip, CvgError)])
                    labels = ([self.folder.labels[order[j]] for j in ok]
                              if self.folder.num_classes else None)
                    done += len(ok)
                    yield arr, labels
        if bad:
            warnings.warn(f"{self.root}: skipped {len(bad)} videos that failed to decode "
                          f"(e.g. {bad[0]})", stacklevel=2)


def folder_source(root: str | os.PathLike, size: int, stride: int = 1, seed: int = 0,
                  skip_bad: bool = False) -> VideoSource:
    """Real clips from a folder scored like generated ones (e.g. a held-out set: the floor)."""
    opened: dict[int, RealClips] = {}

    def source(count: int, frames: int) -> Iterator[Batch]:
        if frames not in opened:
            opened[frames] = RealClips(root, frames, size, stride, seed, skip_bad)
        opened[frames].check(count)
        yield from opened[frames](count, frames)

    return source
