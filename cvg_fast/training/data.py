"""Training batches that are a pure function of (seed, step, global position).

Every process draws its share of the global batch (a contiguous block of positions:
`first_position`) from a per-epoch permutation keyed by (seed, epoch), and each clip's
start from a seed keyed by its global position. Resuming at step s therefore reads
exactly the clips an uninterrupted run would have read, whatever the number of loader
workers, and the same global batch split across any number of processes reads the same.

`make_train_loader` picks the source (--data-backend): that PyAV loader, DALI's reader
(`cvg_fast.data.dali_source`), or DALI with PyAV for the files DALI cannot decode.
"""

from __future__ import annotations

import atexit
import os
import warnings
import weakref
from collections import Counter
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cvg_fast.errors import CvgError
from cvg_fast.models.noise import BatchRandom, seed_key
from cvg_fast.training.preemption import ignore_stop_signals


def first_position(step: int, rank: int, world: int, batch_size: int) -> int:
    """Global position of this process's first sample of `step`: the global batch of
    `world` x `batch_size` samples is cut into contiguous per-rank blocks, so process r of
    W with batch B holds the rows r*B..(r+1)*B-1 of the one-process batch of W*B."""
    return (step * world + rank) * batch_size


class StepSampler(Sampler):
    """Infinite stream of (video_index, clip_seed) for this rank, from `start_step` on;
    with `window_starts` K > 0, (video_index, clip_seed, window_start) instead.

    The window starts (an upscaling level's real windows, decoded by the loader: see
    `cvg_fast.data.level_views`) are the trainer's own first draw of the step for each
    sample, randint(K) from the generator keyed (seed, "step", step, global position)
    (`BatchRandom`), which the trainer still makes: on CPU the run is bit-identical to
    the one that decoded whole clips and drew the windows itself (on CUDA the trainer's
    generators are CUDA's, so the starts are the CPU generator's: the same distribution,
    other numbers).
    """

    def __init__(self, num_videos: int, batch_size: int, rank: int, world: int, seed: int,
                 start_step: int = 0, window_starts: int = 0):
        self.n, self.b, self.rank, self.world = num_videos, batch_size, rank, world
        self.seed, self.start_step = seed, start_step
        self.window_starts = window_starts
        self._perm_epoch, self._perm = -1, None
        self._starts_step, self._starts = -1, None

    def _window_starts(self, step: int) -> torch.Tensor:
        if step != self._starts_step:
            first = first_position(step, self.rank, self.world, self.b)
            rnd = BatchRandom((self.seed, "step", step), range(first, first + self.b), "cpu")
            self._starts = rnd.randint(self.window_starts, self.b)
            self._starts_step = step
        return self._starts

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(seed_key(self.seed, "data", epoch))
            self._perm, self._perm_epoch = torch.randperm(self.n, generator=g), epoch
        return self._perm

    def item(self, step: int, j: int) -> tuple[int, ...]:
        pos = first_position(step, self.rank, self.world, self.b) + j
        epoch, offset = divmod(pos, self.n)
        key = (int(self._permutation(epoch)[offset]), seed_key(self.seed, "clip", pos))
        if self.window_starts:
            return (*key, int(self._window_starts(step)[j]))
        return key

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        step = self.start_step
        while True:
            for j in range(self.b):
                yield self.item(step, j)
            step += 1


class ForkSafeDataLoader(DataLoader):
    """A DataLoader that collects garbage before it forks its workers.

    Why: a PyAV stream or codec context left in a reference cycle (an exception's
    traceback, say) is inherited by a forked worker; when the worker's garbage collector
    frees it, FFmpeg joins its decoding threads, which do not exist in the child: the
    worker hangs for ever (seen in the tests). Collecting in the parent first frees such
    objects where their threads live. Costs a few ms, once per iterator.

    Its workers ignore SIGTERM and SIGINT (`ignore_stop_signals`, set by `make_loader`), so
    multiprocessing's exit hook, which terminate()s daemonic children and then joins them,
    would wait for ever on a worker still running at exit (an iterator kept alive by a
    crash's traceback, say). `_stop_workers_at_exit` runs first and shuts them down.
    """

    def _get_iterator(self):
        if self.num_workers > 0:
            import gc

            gc.collect()
        it = super()._get_iterator()
        if self.num_workers > 0:
            _track_workers(it)
        return it


_live_iterators: weakref.WeakSet = weakref.WeakSet()  # ForkSafeDataLoader iterators with workers
_exit_hook_registered = False


def _track_workers(iterator) -> None:
    global _exit_hook_registered
    _live_iterators.add(iterator)
    if not _exit_hook_registered:  # registered after multiprocessing's: atexit runs it first
        atexit.register(_stop_workers_at_exit)
        _exit_hook_registered = True


def _stop_workers_at_exit() -> None:
    """The DataLoader's own shutdown (done event, then a None on each index queue), then
    SIGKILL for any worker still alive: SIGTERM, multiprocessing's way, is ignored."""
    for it in list(_live_iterators):
        shutdown = getattr(it, "_shutdown_workers", None)  # torch's own, where it has one
        if shutdown is not None:
            shutdown()
        for w in getattr(it, "_workers", ()):
            if w.is_alive():
                w.kill()
                w.join(timeout=5)


def make_loader(dataset, batch_size: int, rank: int, world: int, seed: int, start_step: int,
                num_workers: int, pin_memory: bool = False) -> DataLoader:
    """Batches {"video": (B, T, 3, H, W) in [-1, 1], "label": (B,)} forever, step-keyed."""
    views = getattr(dataset, "views", None)  # a level's decoded views: windows keyed here too
    starts = views.num_starts if views is not None and views.level > 1 else 0
    sampler = StepSampler(len(dataset), batch_size, rank, world, seed, start_step, starts)
    return ForkSafeDataLoader(dataset, batch_size=batch_size, sampler=sampler,
                              num_workers=num_workers, pin_memory=pin_memory,
                              persistent_workers=num_workers > 0,
                              prefetch_factor=2 if num_workers > 0 else None,
                              worker_init_fn=ignore_stop_signals)


# ----------------------------------------------------------------- backends: PyAV, DALI, mixed

BACKENDS = ("auto", "pyav", "dali")


class _VideoSubset(Dataset):
    """`dataset` restricted to `indices`, keyed like VideoFolder: index or (index, seed).
    (torch's Subset cannot take the (index, seed) keys StepSampler yields.)"""

    def __init__(self, dataset, indices: list[int]):
        self.dataset, self.indices = dataset, list(indices)
        self.num_classes = getattr(dataset, "num_classes", 0)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        if isinstance(key, (tuple, list)):
            return self.dataset[(self.indices[int(key[0])], int(key[1]))]
        return self.dataset[self.indices[int(key)]]


class SourceSchedule:
    """Which source gives step s's batch: DALI with probability `p_dali`, a pure function of
    (seed, s) (the same on every rank), drawn in blocks so counting the DALI steps before a
    resumed run's start step costs microseconds per 4,096 steps."""

    BLOCK = 4096

    def __init__(self, seed: int, p_dali: float):
        self.seed, self.p_dali = seed, float(p_dali)
        self._k, self._block = -1, None

    def _draws(self, k: int) -> np.ndarray:
        if k != self._k:
            rng = np.random.default_rng(seed_key(self.seed, "data-source", k))
            self._k, self._block = k, rng.random(self.BLOCK) < self.p_dali
        return self._block

    def uses_dali(self, step: int) -> bool:
        k, j = divmod(step, self.BLOCK)
        return bool(self._draws(k)[j])

    def dali_steps_before(self, step: int) -> int:
        """How many of the steps 0 .. step-1 take their batch from DALI."""
        full, rest = divmod(step, self.BLOCK)
        return int(sum(int(self._draws(k).sum()) for k in range(full))
                   + self._draws(full)[:rest].sum())


class MixedLoader:
    """Endless batches, each step's from the DALI loader or the PyAV loader as `schedule`
    says (both give {"video": (B, T, 3, H, W) float32 in [-1, 1], "label": (B,) int64};
    DALI's on its device, PyAV's on the CPU: the trainer moves them)."""

    def __init__(self, dali, pyav, schedule: SourceSchedule, start_step: int):
        self.dali, self.pyav, self.schedule, self.start_step = dali, pyav, schedule, start_step

    def __iter__(self) -> Iterator[dict]:
        it_dali, it_pyav = iter(self.dali), iter(self.pyav)
        step = self.start_step
        while True:
            yield next(it_dali if self.schedule.uses_dali(step) else it_pyav)
            step += 1


def _codec_counts(videos, indices) -> str:
    from cvg_fast.data.dali_source import canonical_codec

    counts = Counter(canonical_codec(videos[i].codec) for i in indices)
    return ", ".join(f"{c}: {n:,}" for c, n in counts.most_common())


def make_train_loader(backend: str, dataset, batch_size: int, rank: int, world: int, seed: int,
                      start_step: int, num_workers: int, device, dali_only: bool = False):
    """(endless batches from `start_step` on, a one-line description for the run's banner).

    backend: "pyav" (DataLoader over the VideoFolder), "dali" (DALI's reader on `device`:
    NVDEC on cuda, VP8/VP9/MJPEG on cpu) or "auto" (DALI on cuda when installed, else
    PyAV). With DALI, files of codecs its reader cannot decode on `device` are read by
    PyAV (one warning; each step's batch comes from one source, chosen from (seed, step)
    in proportion to the two file counts); `dali_only` makes them an error instead.
    """
    from cvg_fast.data import dali_source as ds

    if backend not in BACKENDS:
        raise CvgError(f"--data-backend {backend!r} is not a data backend; choose one of "
                       f"{', '.join(BACKENDS)}")
    device = torch.device(device)
    n = len(dataset)
    files = hasattr(dataset, "videos")  # a VideoFolder, not clips made in memory
    if backend == "dali":
        ds.require_dali()
        if not files:
            raise CvgError(f"--data-backend dali reads video files; {type(dataset).__name__} "
                           "has none (no .videos): use --data-backend pyav")
    use_dali = backend == "dali" or (backend == "auto" and device.type == "cuda" and files
                                     and ds.dali_available())

    def pyav(data, start: int) -> DataLoader:
        return make_loader(data, batch_size, rank, world, seed, start, num_workers,
                           pin_memory=device.type == "cuda")

    if not use_dali:
        if dali_only:
            raise CvgError(f"--dali-only needs DALI but --data-backend {backend} reads with PyAV "
                           f"here; pass --data-backend dali or drop --dali-only")
        why = ""
        if backend == "auto":
            why = " (auto: DALI is not installed)" if device.type == "cuda" else \
                " (auto: DALI only on cuda)"
        return pyav(dataset, start_step), f"data: PyAV, {n:,} files, {num_workers} workers{why}"

    where = "gpu" if device.type == "cuda" else "cpu"
    ok, rest = ds.split_by_decoder(dataset.videos, device)
    if rest:
        codecs = _codec_counts(dataset.videos, rest)
        if dali_only:
            raise CvgError(f"--dali-only: DALI's {where} reader cannot decode {len(rest):,} of "
                           f"{n:,} files ({codecs}; e.g. {dataset.videos[rest[0]].path}); drop "
                           f"--dali-only to read them with PyAV, or re-encode them to VP9")
        names = ", ".join(os.path.basename(dataset.videos[i].path) for i in rest[:3])
        more = " ..." if len(rest) > 3 else ""
    if not ok:
        if rank == 0:
            warnings.warn(f"DALI's {where} reader decodes none of the {n:,} files ({codecs}; "
                          f"e.g. {names}{more}): reading them all with PyAV", stacklevel=2)
        return pyav(dataset, start_step), (f"data: PyAV, {n:,} files (DALI's {where} reader "
                                           f"decodes none: {codecs})")
    dali = ds.DaliClipLoader(
        [dataset.videos[i].path for i in ok], [dataset.labels[i] for i in ok],
        dataset.clip_frames, dataset.frame_stride, dataset.size, batch_size, device,
        shard_id=rank, num_shards=world, seed=seed, start_step=start_step,
        num_threads=max(1, num_workers), frames=[dataset.videos[i].frames for i in ok])
    desc = f"data: {dali.describe()}"
    notes = [dali.mismatch] if dali.mismatch else []
    loader = dali
    if rest:
        share = len(rest) / n
        schedule = SourceSchedule(seed, 1.0 - share)
        pyav_start = start_step - schedule.dali_steps_before(start_step)
        loader = MixedLoader(dali, pyav(_VideoSubset(dataset, rest), pyav_start), schedule,
                             start_step)
        desc += f"; PyAV fallback for {len(rest):,} files ({codecs}), {share:.0%} of the steps"
        notes.insert(0, f"DALI's {where} reader cannot decode {len(rest):,} of {n:,} files "
                        f"({codecs}; e.g. {names}{more}): PyAV reads them, for about "
                        f"{share:.0%} of the steps (--dali-only makes this an error)")
    if notes and rank == 0:
        warnings.warn("; ".join(notes), stacklevel=2)
    return loader, desc


def worker_error(exc: CvgError) -> CvgError:
    """A CvgError raised in a DataLoader worker arrives as "Caught CvgError in DataLoader
    worker process 0.\nOriginal Traceback ...\ncvg_fast.errors.CvgError: <message>": give
    back the one-line <message> (an error from the main process comes back unchanged)."""
    text = str(exc)
    if "\n" not in text:
        return exc
    marker = f"{CvgError.__module__}.{CvgError.__qualname__}: "
    lines = [line for line in text.splitlines() if line.startswith(marker)]
    return CvgError(lines[-1][len(marker):]) if lines else exc
