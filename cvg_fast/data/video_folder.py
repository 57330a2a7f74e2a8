"""A torch Dataset over a folder of real video files (UCF101, Kinetics, BDD100K, ...).

Layouts (`cvg_fast.data.layouts.detect_layout`, with `split=` and `layout=`): UCF101
with its split files, Kinetics with its CSVs, BDD100K split folders, and the generic
root/<class_name>/**/<video> (class index = sorted names -> conditional) or flat
root/<video> (num_classes = 0, unconditional).
A folder named like a video (`clip.mp4/`) that holds no video is listed as a
(bad) video, not passed over: a dataset must never lose a file without saying so.

Every file is probed once (frame count, first frame decoded) in a small thread pool
(PyAV releases the GIL); `index_cache` keeps those results in a JSON file so a
13k-file dataset is not re-probed by every run and every rank.

An item is one clip: `{"video": float32 (T, 3, H, W) in [-1, 1], "label": int64 (),
"skipped": str}`; "skipped" lists the files that failed before this clip was read (with
skip_bad; '' when none): `parse_skipped` reads it, a batch holds a list of them.
Its start frame is drawn from `torch.Generator().manual_seed(seed)`, so the data of a
training run is a pure function of (index, seed): pass `(index, seed)` keys from the
sampler, e.g. seed = hash of (run seed, step), to make every batch reproducible.
With `views` (a `LevelViews`), an item is instead the pyramid views one training level
uses, decoded from only the frames they need.
"""

from __future__ import annotations

import json
import os
import secrets
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from stat import S_ISBLK, S_ISCHR, S_ISDIR, S_ISFIFO, S_ISREG, S_ISSOCK

import numpy as np
import torch
from torch.utils.data import Dataset

from cvg_fast.data import video_io
from cvg_fast.data.layouts import detect_layout
from cvg_fast.data.level_views import LevelViews
from cvg_fast.data.video_io import VideoInfo
from cvg_fast.errors import CvgError

__all__ = ["VideoFolder", "scan_video_folder", "parse_skipped"]

_CACHE_FORMAT = "cvg_fast.video_index"
_CACHE_VERSION = 1
_SKIP_FLAG = "--skip-bad-videos (skip_bad=True)"
_PROGRESS_MIN_FILES = 50


def scan_video_folder(root: str | os.PathLike) -> tuple[list[str] | None, list[tuple[str, int]]]:
    """(classes, items) of `detect_layout(root)` (see `cvg_fast.data.layouts`): classes is
    None when unconditional; items is [(path relative to root, label)]."""
    listing = detect_layout(root)
    return listing.classes, listing.items


def _not_a_video_file(st: os.stat_result) -> str | None:
    """Why a path cannot be a video, from its stat alone; None for a non-empty file.
    A named pipe must never reach the decoder: opening one for reading blocks forever."""
    kinds = ((S_ISDIR, "a folder, not a video file"),
             (S_ISFIFO, "a named pipe, not a video file"),
             (S_ISSOCK, "a socket, not a video file"),
             (S_ISCHR, "a device, not a video file"),
             (S_ISBLK, "a device, not a video file"))
    for test, why in kinds:
        if test(st.st_mode):
            return why
    if not S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size == 0:
        return "empty file, 0 bytes"
    return None


def _probe_one(path: str) -> VideoInfo | str:
    """VideoInfo, or the one-line CvgError message for an unreadable file."""
    try:
        return video_io.probe_video(path)
    except CvgError as exc:
        return str(exc)


def _load_cache(path: str | None) -> dict:
    if path is None or not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("format") != _CACHE_FORMAT or data.get("version") != _CACHE_VERSION:
            return {}
        return dict(data["entries"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        warnings.warn(f"{path}: video index cache is unreadable; probing the videos again",
                      stacklevel=4)
        return {}


def _save_cache(path: str, root: str, entries: dict) -> None:
    """Atomic write: several ranks may write the same cache at once; each write is whole."""
    tmp = None
    try:
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{os.path.basename(path)}.{secrets.token_hex(4)}.partial")
        with open(tmp, "w", encoding="utf-8") as f:
            doc = {"format": _CACHE_FORMAT, "version": _CACHE_VERSION, "root": root,
                   "entries": entries}
            json.dump(doc, f, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        warnings.warn(
            f"{path}: could not write the video index cache ({exc}); continuing without it",
            stacklevel=4,
        )


def probe_videos(root: str, rels: list[str], index_cache=None,
                 progress: bool = True) -> list[VideoInfo | str]:
    """VideoInfo (or the one-line reason it is unreadable) of every root/rel, in `rels`
    order, probed in parallel threads with a progress bar. With `index_cache` (a JSON
    path), cached entries are reused while a file's size and mtime still match, so editing
    one file re-probes only that file, and the cache is rewritten atomically."""
    cache_path = os.fspath(index_cache) if index_cache is not None else None
    cached = _load_cache(cache_path)
    paths = [os.path.join(root, rel) for rel in rels]
    results: list[VideoInfo | str | None] = [None] * len(rels)
    stats: list[tuple[int, int] | None] = []
    for k, p in enumerate(paths):
        try:
            st = os.stat(p)
            problem = _not_a_video_file(st)
        except OSError as exc:  # broken symlink, permissions
            problem = exc.strerror or type(exc).__name__
        if problem is None:
            stats.append((st.st_size, st.st_mtime_ns))
        else:  # decided without opening it: never cached
            stats.append(None)
            results[k] = f"{p}: not a readable video ({problem}); {video_io.BAD_VIDEO_HINT}"
    todo = []
    for k, (rel, stat) in enumerate(zip(rels, stats)):
        if stat is None:
            continue
        entry = cached.get(rel)
        if entry and entry.get("size") == stat[0] and entry.get("mtime_ns") == stat[1]:
            try:
                if "info" in entry:
                    results[k] = VideoInfo(path=paths[k], **entry["info"])
                else:
                    results[k] = f"{paths[k]}: {entry['error']}"
                continue
            except (TypeError, KeyError):  # hand-edited or foreign entry: probe again
                pass
        todo.append(k)
    if todo:
        from tqdm.auto import tqdm

        workers = max(1, min(8, 2 * (os.cpu_count() or 1), len(todo)))
        bar = tqdm(
            total=len(todo),
            desc=f"probing videos in {os.path.basename(root) or root}",
            unit="video",
            disable=not (progress and len(todo) > _PROGRESS_MIN_FILES),
        )
        with bar, ThreadPoolExecutor(max_workers=workers) as pool:
            for k, result in zip(todo, pool.map(_probe_one, [paths[k] for k in todo])):
                results[k] = result
                bar.update(1)
    # Entries of files outside this request (another split, another layout) are kept:
    # indexing train then test must not re-probe train next time.
    requested = set(rels)
    gone = {rel for rel, stat in zip(rels, stats) if stat is None and rel in cached}
    if cache_path is not None and (todo or gone):
        entries = {rel: e for rel, e in cached.items() if rel not in requested}
        for rel, path, stat, result in zip(rels, paths, stats, results):
            if stat is None:
                continue
            entry = {"size": stat[0], "mtime_ns": stat[1]}
            if isinstance(result, VideoInfo):
                info = asdict(result)
                del info["path"]  # rebuilt from root + key: the dataset may move
                entry["info"] = info
            else:
                prefix = f"{path}: "
                entry["error"] = result[len(prefix):] if result.startswith(prefix) else result
            entries[rel] = entry
        _save_cache(cache_path, root, entries)
    return results  # type: ignore[return-value]


class VideoFolder(Dataset):
    """Clips of `clip_frames` frames, every `frame_stride`-th frame, `size` x `size` px.

    Attributes: classes (label -> class name, [] when flat), num_classes (0 when flat:
    unconditional), videos (list[VideoInfo]), labels (list[int]), root, listing (the
    DatasetListing of `detect_layout(root, split, layout)`: layout, split, missing).
    Keeps no open files: safe to pickle into DataLoader workers.

    Bad files: an unreadable file or one shorter than (clip_frames-1)*frame_stride+1
    frames is a CvgError at construction; with skip_bad=True they are skipped with
    one summary warning and listed in `skipped_at_start` [(path, reason)]. No usable
    file at all is one CvgError either way. A file that fails later, while decoding a
    clip, raises a CvgError naming it; with skip_bad the item falls back to the next
    video (deterministically) and names the failed file in item["skipped"] -- the
    only way news from a DataLoader worker process reaches the trainer -- and, unless
    `warn_on_read` is False (a consumer that reports "skipped" itself), warns once.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        clip_frames: int,
        size: int,
        frame_stride: int = 1,
        skip_bad: bool = False,
        index_cache: str | os.PathLike | None = None,
        progress: bool = True,
        split: str | None = None,
        layout: str = "auto",
        views: LevelViews | None = None,
    ):
        params = (("clip_frames", clip_frames), ("size", size), ("frame_stride", frame_stride))
        for name, value in params:
            if int(value) != value or value < 1:
                raise CvgError(f"{name} must be a whole number >= 1 (got {value})")
        self.root = os.path.abspath(os.path.expanduser(os.fspath(root)))
        self.clip_frames = int(clip_frames)
        self.size = int(size)
        self.frame_stride = int(frame_stride)
        self.skip_bad = bool(skip_bad)
        if views is not None and (views.top_frames, views.shapes[-1][1]) != (clip_frames, size):
            raise ValueError(f"VideoFolder: views are of {views.top_frames}-frame {views.shapes[-1][1]}px "
                             f"clips, the folder reads {clip_frames}-frame {size}px clips")
        self.views = views
        self.frames_needed = (self.clip_frames - 1) * self.frame_stride + 1

        self.listing = detect_layout(self.root, split, layout)
        classes, items = self.listing.classes, self.listing.items
        probed = self._probe_all([rel for rel, _ in items], index_cache, progress)

        videos, labels, unreadable, short = [], [], [], []
        for (rel, label), result in zip(items, probed):
            if isinstance(result, str):
                unreadable.append((rel, result))
            elif result.frames < self.frames_needed:
                short.append((rel, result))
            else:
                videos.append(result)
                labels.append(label)
        if not videos:  # one clear error, flag or not: skipping cannot help here
            example = (f"{unreadable[0][0]} ({_short_reason(unreadable[0][1])})" if unreadable
                       else f"{short[0][0]} ({short[0][1].frames} frames)")
            raise CvgError(
                f"no usable videos in {self.root}: all {len(items)} are unreadable "
                f"({len(unreadable)}) or shorter than {self.frames_needed} frames ({len(short)}), "
                f"e.g. {example}; lower --frame-stride/--clip-frames or fix the files"
            )
        self._handle_bad(len(items), unreadable, short)
        #: files dropped at construction (skip_bad): [(path, reason)], unreadable then too short
        self.skipped_at_start: list[tuple[str, str]] = (
            [(os.path.join(self.root, rel), _reason_of(msg, os.path.join(self.root, rel)))
             for rel, msg in unreadable]
            + [(info.path, f"only {info.frames} frames, a clip needs {self.frames_needed}")
               for _, info in short])
        self.classes: list[str] = list(classes) if classes is not None else []
        self.num_classes: int = len(self.classes)
        self.videos: list[VideoInfo] = videos
        self.labels: list[int] = labels
        self.warn_on_read = True
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ index

    def _probe_all(self, rels: list[str], index_cache, progress: bool) -> list[VideoInfo | str]:
        return probe_videos(self.root, rels, index_cache, progress)

    def _handle_bad(self, total: int, unreadable: list, short: list) -> None:
        n_bad = len(unreadable) + len(short)
        if not n_bad:
            return
        need = self.frames_needed
        if not self.skip_bad:
            others = f"; {n_bad - 1} other videos are bad too" if n_bad > 1 else ""
            if unreadable:
                msg = unreadable[0][1]
                raise CvgError(f"{msg}{others}")
            rel, info = short[0]
            raise CvgError(
                f"{info.path}: only {info.frames} frames, but a clip of {self.clip_frames} "
                f"frames at stride {self.frame_stride} needs {need}; lower --frame-stride or "
                f"--clip-frames, remove the video, or pass {_SKIP_FLAG}{others}"
            )
        examples = [f"{rel} ({_short_reason(msg)})" for rel, msg in unreadable[:3]]
        room = max(0, 5 - len(examples))
        examples += [f"{rel} ({info.frames} frames)" for rel, info in short[:room]]
        warnings.warn(
            f"{self.root}: skipping {n_bad} of {total} videos: {len(unreadable)} unreadable, "
            f"{len(short)} shorter than {need} frames (clip {self.clip_frames} x stride "
            f"{self.frame_stride}); e.g. {', '.join(examples)}",
            stacklevel=3,
        )

    # ------------------------------------------------------------------ items

    def __len__(self) -> int:
        return len(self.videos)

    def __repr__(self) -> str:
        kind = f"{self.num_classes} classes" if self.num_classes else "unconditional"
        return (
            f"VideoFolder({self.root}: {len(self)} videos, {kind}, clip {self.clip_frames} frames "
            f"x stride {self.frame_stride}, {self.size}x{self.size} px)"
        )

    def _parse_key(self, key) -> tuple[int, int, int | None]:
        """index, (index, seed) or (index, seed, window_start) -> (index, seed, start|None)."""
        start = None
        if isinstance(key, (tuple, list)):
            if len(key) not in (2, 3):
                raise TypeError(f"VideoFolder key must be an index, (index, seed) or "
                                f"(index, seed, window_start), got {key!r}")
            index, seed = int(key[0]), int(key[1])
            if len(key) == 3:
                start = int(key[2])
        else:
            index = int(key)
            seed = None
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"VideoFolder index {index} out of range for {n} videos")
        index %= n
        return index, index if seed is None else seed, start

    def clip_start(self, index: int, seed: int | None = None) -> int:
        """The first frame of item (index, seed): uniform over all valid starts."""
        n_starts = self.videos[index].frames - self.frames_needed + 1
        g = torch.Generator().manual_seed(index if seed is None else int(seed))
        return int(torch.randint(n_starts, (1,), generator=g).item())

    def _load(self, index: int, seed: int, window_start: int | None = None) -> dict:
        info = self.videos[index]
        start = self.clip_start(index, seed)
        label = torch.tensor(self.labels[index], dtype=torch.int64)
        if self.views is None:
            clip = video_io.read_clip(info.path, start, self.clip_frames, self.frame_stride,
                                      self.size)
            return {"video": _to_float(clip), "label": label}
        if window_start is None:  # drawn from the item's seed unless the sampler chose it
            window_start = self.views.window_start(seed)
        picks = self.views.top_indices(window_start)
        frames = video_io.read_frames(info.path, [start + i * self.frame_stride for i in picks],
                                      self.size)
        return {**self.views.views(_to_float(frames)), "label": label}

    def __getitem__(self, key) -> dict:
        """index or (index, seed) -> {"video": (T, 3, H, W) float32 in [-1, 1], "label": int64,
        "skipped": str (the files that failed before this clip; `parse_skipped`)}; with
        `views`, {"high", "low" (upscaling levels)} instead of "video" (`LevelViews.views`),
        from the same clip."""
        index, seed, window_start = self._parse_key(key)
        n = len(self)
        failed: list[tuple[str, str]] = []
        for attempt in range(n if self.skip_bad else 1):
            j = (index + attempt) % n
            try:
                item = self._load(j, seed, window_start)
            except CvgError as exc:
                if not self.skip_bad:
                    raise
                path = self.videos[j].path
                failed.append((path, _reason_of(str(exc), path)))
                if self.warn_on_read and path not in self._warned:
                    self._warned.add(path)
                    warnings.warn(
                        f"{path}: {failed[-1][1]}; skipping it (skip_bad): items fall back to "
                        "the next video",
                        stacklevel=2,
                    )
                continue
            item["skipped"] = _format_skipped(failed)
            return item
        raise CvgError(
            f"no video in {self.root} could be decoded: all {n} failed, e.g. {failed[0][0]} "
            f"({failed[0][1]}); check the files"
        )


def _to_float(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float32 (T, 3, H, W) in [-1, 1]."""
    video = torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2))).float()
    return video.div_(127.5).sub_(1.0)


def _format_skipped(entries: list[tuple[str, str]]) -> str:
    """[(path, reason)] -> one string (a DataLoader collates strings into a list)."""
    return "\n".join(f"{path}\t{reason}" for path, reason in entries)


def parse_skipped(text: str) -> list[tuple[str, str]]:
    """An item's "skipped" string -> [(path, reason)] ('' -> [])."""
    return [tuple(line.split("\t", 1)) for line in text.splitlines() if "\t" in line]


def _reason_of(msg: str, path: str) -> str:
    """'<path>: what went wrong (detail); what to do' -> 'what went wrong (detail)'."""
    if msg.startswith(f"{path}: "):
        msg = msg[len(path) + 2:]
    return msg.split("; ")[0]


def _short_reason(msg: str) -> str:
    """'<path>: not a readable video (reason); ...' -> 'reason'."""
    start = msg.find("(")
    end = msg.find(")", start + 1)
    return msg[start + 1 : end] if 0 <= start < end else msg
