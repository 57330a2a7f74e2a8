"""`cvg data index DIR`: what a video folder holds, before a run trains on it.

    summary = index_folder("/data/UCF-101")      # probes every video (cached, parallel)
    summary = index_folder("/data/UCF-101", split="test1")  # one split (see data/layouts.py)
    print(summary.report())

Why: a training run should not be the first thing to find that a tenth of a dataset
does not decode, or that it mixes 25 and 30 fps. The report gives the videos, the
classes (`N classes`, or unconditional for a flat folder), the total frames, and
the frame rates, sizes and codecs with their counts, then every unreadable file
with its reason; its second line names the layout and split read, and a layout with
split files or CSVs counts the listed videos missing on disk. The probe results go to
the same JSON index cache `VideoFolder` and the trainer read, so a later run (or a
second `cvg data index`) reuses them.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cvg_fast.data.layouts import DatasetListing, detect_layout
from cvg_fast.data.video_folder import probe_videos
from cvg_fast.data.video_io import VideoInfo

DEFAULT_CACHE = Path(".cvg_cache") / "data_index.json"  # under the data folder


@dataclass
class FolderIndex:
    """Probe results of every video of a folder (see `index_folder`)."""

    root: str
    classes: list[str] | None  # None: a flat folder (unconditional)
    videos: list[tuple[str, int, VideoInfo]] = field(default_factory=list)  # (rel, label, info)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (rel, reason)
    cache: str | None = None
    listing: DatasetListing | None = None  # which files, which labels (layout, split)

    @property
    def total_frames(self) -> int:
        return sum(info.frames for _, _, info in self.videos)

    def report(self, max_failures: int = 20) -> str:
        n_ok, n_bad = len(self.videos), len(self.failures)
        kind = (f"{len(self.classes)} classes" if self.classes is not None
                else "flat folder (unconditional)")
        lines = [f"{self.root}: {n_ok + n_bad} videos, {kind}"]
        if self.listing is not None:
            lines.append(f"layout: {self.listing.describe()}")
            missing = self.listing.missing
            if self.listing.layout in ("ucf101", "kinetics"):  # the layouts with lists
                lines.append(f"missing: {len(missing):,} listed videos not on disk"
                             + (f" (e.g. {', '.join(missing[:3])})" if missing else ""))
        lines.append(f"readable: {n_ok} videos, {self.total_frames} frames in all")
        infos = [info for _, _, info in self.videos]
        if infos:
            frames = sorted(i.frames for i in infos)
            lines.append(f"frames per video: min {frames[0]}, median {frames[len(frames) // 2]}, "
                         f"max {frames[-1]}")
            lines.append("frame rates: " + _counts(f"{i.fps:g} fps" for i in infos))
            lines.append("sizes: " + _counts(f"{i.width}x{i.height}" for i in infos))
            lines.append("codecs: " + _counts(i.codec for i in infos))
        if self.classes is not None:
            per = Counter(label for _, label, _ in self.videos)
            empty = [c for k, c in enumerate(self.classes) if per[k] == 0]
            sizes = sorted(per[k] for k in range(len(self.classes)))
            lines.append(f"videos per class: min {sizes[0]}, max {sizes[-1]}"
                         + (f"; {len(empty)} classes with no readable video (e.g. {empty[0]})"
                            if empty else ""))
        lines.append(f"unreadable: {n_bad}" + (":" if n_bad else ""))
        for rel, reason in self.failures[:max_failures]:
            lines.append(f"  {rel}: {reason}")
        if n_bad > max_failures:
            lines.append(f"  ... and {n_bad - max_failures} more")
        if self.cache:
            lines.append(f"index cache: {self.cache}")
        return "\n".join(lines)


def _counts(values, most: int = 12) -> str:
    c = Counter(values)
    parts = [f"{v} ({n})" for v, n in c.most_common(most)]
    if len(c) > most:
        parts.append(f"{len(c) - most} more")
    return ", ".join(parts)


def _default_cache(root: str) -> str | None:
    """root/.cvg_cache/data_index.json where the data folder is writable, else none."""
    folder = os.path.join(root, os.path.dirname(DEFAULT_CACHE))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return None
    return os.path.join(root, DEFAULT_CACHE) if os.access(folder, os.W_OK) else None


def index_folder(root: str | os.PathLike, index_cache: str | os.PathLike | None = None,
                 progress: bool = True, use_cache: bool = True, split: str | None = None,
                 layout: str = "auto") -> FolderIndex:
    """List `root` with `detect_layout(root, split, layout)`, probe every video in parallel
    threads with a progress bar, and return what was found. index_cache: the JSON cache to
    read and update (default: root/.cvg_cache/data_index.json when the folder is writable)."""
    root = os.path.abspath(os.path.expanduser(os.fspath(root)))
    listing = detect_layout(root, split, layout)
    classes, items = listing.classes, listing.items
    cache = None
    if use_cache:
        cache = os.fspath(index_cache) if index_cache is not None else _default_cache(root)
    results = probe_videos(root, [rel for rel, _ in items], cache, progress)
    index = FolderIndex(root, list(classes) if classes is not None else None, cache=cache,
                        listing=listing)
    for (rel, label), result in zip(items, results):
        if isinstance(result, VideoInfo):
            index.videos.append((rel, label, result))
        else:
            prefix = os.path.join(root, rel) + ": "
            index.failures.append((rel, result[len(prefix):] if result.startswith(prefix)
                                   else result))
    return index
