"""Long-video sampling in constant memory: every level streamed, windows batched.

    cascade = cvg_fast.load_cascade("runs/tiny")
    videos = cvg_fast.generate(cascade, num_videos=4, frames=64)   # uint8 (4, 64, H, W, 3)
    paths = cvg_fast.generate(cascade, frames=4800, out="samples/")  # .mp4 files, streamed

Level 1 runs in time chunks with its ConvGRU states carried; each upscaler
slides over its input as the frames arrive, many windows (videos x positions)
per generator call; finished frames go to a writer thread (encoding overlaps
the next windows). With `out`, what is resident is one chunk per level, the
windows in flight and the writers: memory does not grow with `frames`.
Video i depends only on (seed, i): the same alone or in a batch, whatever the
chunking or window batching.
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
from cvg_fast.sampling.writer import BackgroundWriter


@dataclass
class GenerationStats:
    """What a generate() call measured."""

    frames: int
    size: int
    seconds: float = 0.0
    # per upscaling level: mean |downsample(x̂^l) - x̂^{l-1}| on a [0, 1] scale
    matching_error: dict[int, float] = field(default_factory=dict)
    precision: str = ""  # PrecisionSettings.describe() of the run
    chunk_frames: int = 0  # level-1 frames per chunk
    max_batch: int = 0  # rows (videos x window positions) per upscaler call

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds else float("nan")


class _MatchingError:
    """Accumulates per-level mean absolute error between each window and its input.

    Sums stay on the device until `result()`: a float() per window would make the GPU
    wait for every window (and stall CUDA-graph replays)."""

    def __init__(self):
        self.sum: dict[int, torch.Tensor] = {}
        self.count: dict[int, int] = {}

    def __call__(self, level: int, x_in: torch.Tensor, y_out: torch.Tensor) -> None:
        down = downsample_to(y_out.float(), x_in.shape[1], x_in.shape[-1])
        err = (down - x_in.float()).abs()
        total = err.sum(dtype=torch.float64) / 2.0  # [-1, 1] -> [0, 1]
        self.sum[level] = self.sum[level] + total if level in self.sum else total
        self.count[level] = self.count.get(level, 0) + err.numel()

    def result(self) -> dict[int, float]:
        return {lv: float(self.sum[lv]) / self.count[lv] for lv in sorted(self.sum)}


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


# rows (videos x window positions) per upscaler call on CPU when max_batch is None: on the
# tiny preset on 2 cores 8-32 rows measured alike and 64 rows 35% slower (cache); the
# memory budget below can lower it further
CPU_MAX_ROWS = 16
CUDA_MAX_ROWS = 256
# share of free memory (CUDA) / of available memory (CPU) an upscaler call may take
MEMORY_SHARE = 0.5


# level-1 pixels per video per chunk when chunk_frames is None: 64 frames at 16px (the tiny
# preset; larger chunks measured no faster on 2 cores, 8-frame chunks 8% slower), fewer
# frames at larger sizes so a chunk's activations stay small
CHUNK_PIXELS = 64 * 16 * 16


def default_chunk_frames(cascade: Cascade) -> int:
    """Level-1 frames per chunk: CHUNK_PIXELS worth, at least its training length."""
    lv = cascade.level_cfg(1).levels[0]
    return max(lv.frames, CHUNK_PIXELS // (lv.size * lv.size))


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def _window_row_bytes(cascade: Cascade, device: torch.device, bf16: bool) -> int:
    """Peak bytes one row (one video's window) of the heaviest upscaler call allocates."""
    from cvg_fast.live_tensors import LiveTensorTracker

    worst = 0
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    for level in range(2, cascade.num_levels + 1):
        gen, lc = cascade.generators[level - 1], cascade.level_cfg(level)
        prev = cascade.level_cfg(level).levels[level - 2]
        w = lc.window(level) or prev.frames
        x = torch.zeros(1, w, 3, prev.size, prev.size, device=device)
        noise = torch.zeros(1, w * cascade.t_factor(level), lc.z_ch, prev.size, prev.size,
                            device=device)
        y = torch.zeros(1, dtype=torch.long, device=device) if cascade.num_classes else None
        with torch.inference_mode(), amp, LiveTensorTracker(device) as tr:
            gen(x, noise, y)
        worst = max(worst, tr.peak_bytes)
    return max(worst, 1)


def auto_max_batch(cascade: Cascade, device: torch.device, bf16: bool) -> int:
    """Rows per upscaler call when max_batch is None: as many as MEMORY_SHARE of the free
    memory holds (one probe window per level measures a row's peak), at most CUDA_MAX_ROWS
    on CUDA and CPU_MAX_ROWS on CPU."""
    if cascade.num_levels < 2:
        return 1
    cap = CUDA_MAX_ROWS if device.type == "cuda" else CPU_MAX_ROWS
    budget = _available_bytes(device) * MEMORY_SHARE
    return int(max(1, min(cap, budget // _window_row_bytes(cascade, device, bf16))))


def _batch_chunks(cascade: Cascade, ids: list[int], labels: list[int] | None, frames: int,
                  seed: int, device: torch.device, overlap: float, chunk_frames: int,
                  max_batch: int, on_window=None, bf16: bool = False,
                  window_call=None) -> Iterator[torch.Tensor]:
    """Float chunks (B, t, 3, H, W) in [-1, 1] of videos `ids`, in order, `frames` in all."""
    frames1 = math.ceil(frames / cascade.total_t_factor())
    z = video_noise(seed, ids, cascade.level_cfg(1).z_dim).to(device)
    y = torch.tensor([labels[i] for i in ids], device=device) if labels else None

    def noise(level, t_a, t_b, shape):
        return frame_noise(seed, ids, level, t_a, t_b, shape)

    done = 0
    # no weight-cast cache under CUDA graphs: a cast cached during capture is freed at exit
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16,
                         cache_enabled=window_call is None)
    with torch.inference_mode(), amp:
        for chunk in cascade.stream(z, y, frames1, noise, on_window=on_window, overlap=overlap,
                                    chunk_frames=chunk_frames, max_batch=max_batch,
                                    window_call=window_call):
            chunk = chunk[:, : frames - done]
            if chunk.shape[1] == 0:
                break
            done += chunk.shape[1]
            yield chunk


@dataclass
class _Plan:
    """Checked arguments of a generate()/iter_videos() call."""

    cascade: Cascade
    frames: int
    device: torch.device
    precision: object  # PrecisionSettings
    chunk_frames: int
    max_batch: int
    window_call: object = None

    def chunks(self, ids, labels, seed, overlap, on_window=None):
        return _batch_chunks(self.cascade, ids, labels, self.frames, seed, self.device, overlap,
                             self.chunk_frames, self.max_batch, on_window,
                             bf16=self.precision.amp == "bf16", window_call=self.window_call)


def _whole(name: str, value, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise CvgError(f"{name} must be a whole number >= 1, got {value!r}")


def _prepare(cascade, frames, num_videos, batch_size, overlap, levels, device, amp="auto",
             channels_last=None, chunk_frames=None, max_batch=None, cuda_graphs=None) -> _Plan:
    """Checked arguments; the cascade is moved to the device, in eval mode, in the settings'
    layout, cut to `levels`."""
    if not isinstance(cascade, Cascade):
        cascade = load_cascade(cascade, device=device)
    if levels is not None:
        if not 1 <= levels <= cascade.num_levels:
            raise CvgError(f"levels={levels}: this cascade has levels 1..{cascade.num_levels}")
        cascade = cascade.truncated(levels)
    if frames is None:
        frames = cascade.cfg.levels[cascade.num_levels - 1].frames
    _whole("frames", frames, allow_none=False)
    _whole("num_videos", num_videos, allow_none=False)
    _whole("batch_size", batch_size, allow_none=False)
    _whole("chunk_frames", chunk_frames)
    _whole("max_batch", max_batch)
    if not 0.0 <= overlap <= 0.5:
        raise CvgError(f"overlap must be a fraction between 0 and 0.5, got {overlap}")
    device = torch.device(device) if device is not None else next(cascade.parameters()).device
    cascade.to(device).eval()
    precision = resolve_precision(device, "auto" if amp is None else amp, channels_last)
    set_channels_last(cascade, precision.channels_last)
    bf16 = precision.amp == "bf16"
    if max_batch is None:
        max_batch = auto_max_batch(cascade, device, bf16)
    window_call = None
    if cuda_graphs is None:
        cuda_graphs = device.type == "cuda"
    if cuda_graphs:
        if device.type != "cuda":
            raise CvgError(f"cuda_graphs=True needs a CUDA device, got {device}")
        from cvg_fast.sampling.cuda_graphs import graphed_window_call

        window_call = graphed_window_call
    return _Plan(cascade, int(frames), device, precision,
                 int(chunk_frames or default_chunk_frames(cascade)), int(max_batch), window_call)


def iter_videos(cascade: Cascade | str | os.PathLike, num_videos: int, frames: int | None = None,
                classes=None, seed: int = 0, device: str | torch.device | None = None,
                batch_size: int = 8, levels: int | None = None, overlap: float = 0.0,
                first: int = 0, amp: str | None = "auto", channels_last: bool | None = None,
                chunk_frames: int | None = None, max_batch: int | None = None
                ) -> Iterator[tuple[np.ndarray, list[int] | None]]:
    """Videos `first`..`first + num_videos - 1` as batches: (uint8 (B, F, H, W, 3), labels).

    The same videos `generate` makes for the same seed (video i's noise depends only on
    (seed, i)); only one batch is resident, which is what the metrics stream over.
    labels: the class of each video of the batch (None for an unconditional cascade).
    amp, channels_last, chunk_frames, max_batch: as for `generate`.
    """
    plan = _prepare(cascade, frames, num_videos, batch_size, overlap, levels, device, amp,
                    channels_last, chunk_frames, max_batch)
    labels = _resolve_classes(plan.cascade, first + num_videos, classes, first)
    for b0 in range(first, first + num_videos, batch_size):
        ids = list(range(b0, min(b0 + batch_size, first + num_videos)))
        arr = np.concatenate([_to_uint8(c) for c in plan.chunks(ids, labels, seed, overlap)],
                             axis=1)
        yield arr, ([labels[i] for i in ids] if labels else None)


def generate(cascade: Cascade | str | os.PathLike, num_videos: int = 1, frames: int | None = None,
             classes=None, seed: int = 0, device: str | torch.device | None = None,
             out: str | os.PathLike | None = None, batch_size: int = 8, fps: int | None = None,
             levels: int | None = None, overlap: float = 0.0, progress: bool = True,
             return_stats: bool = False, amp: str | None = "auto",
             channels_last: bool | None = None, chunk_frames: int | None = None,
             max_batch: int | None = None, cuda_graphs: bool | None = None):
    """Sample `num_videos` videos of `frames` frames from a trained cascade.

    cascade: a Cascade or a run folder. frames: output length at the top level
    (default: its training length; any length >= 1 works). classes: None (video
    i gets class i mod num_classes), one int, or one per video. levels: stop at
    this level (default: all trained). overlap: fraction of each upscaler window
    (0 to 0.5) shared with the next, each frame taken from the window it is more
    central in: no held window-end frames at the seams, for
    up to 2x upscaler work (0 = the paper's back-to-back windows).
    Returns uint8 (N, F, H, W, 3), or the list of .mp4 paths when `out` is
    given (written on a background thread while the next frames compute; a failed
    call leaves no half-written file); with return_stats=True, also a GenerationStats
    (timings and the per-level matching error).

    Speed and memory (none of these change the videos beyond float rounding):
    batch_size: videos generated together. chunk_frames: level-1 frames per chunk
    (default: `default_chunk_frames`; its ConvGRU states are carried between chunks).
    max_batch: rows (videos x window positions) per upscaler call (default: sized from
    free memory, see `auto_max_batch`). amp: "auto"/None (bf16 where the device computes
    it natively), "none" (fp32) or "bf16"; channels_last: None (the device's fastest), True
    or False (cvg_fast.nn.precision). cuda_graphs: replay each fixed-shape call (an
    upscaler's window group, a level-1 chunk) as a CUDA graph (default: on for CUDA).
    """
    plan = _prepare(cascade, frames, num_videos, batch_size, overlap, levels, device, amp,
                    channels_last, chunk_frames, max_batch, cuda_graphs)
    cascade, frames = plan.cascade, plan.frames
    labels = _resolve_classes(cascade, num_videos, classes)
    cfg, top = cascade.cfg, cascade.num_levels
    size = cfg.levels[top - 1].size
    fps = fps or cfg.fps
    stats = GenerationStats(frames=frames * num_videos, size=size,
                            precision=plan.precision.describe(), chunk_frames=plan.chunk_frames,
                            max_batch=plan.max_batch)
    matching = _MatchingError()
    paths: list[Path] = []
    result = None if out is not None else np.empty((num_videos, frames, size, size, 3), np.uint8)
    writer = None
    if out is not None:
        out = Path(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CvgError(f"{out}: cannot create the output folder ({e.strerror})") from None
        writer = BackgroundWriter(fps, codec_threads=0 if plan.device.type == "cuda" else 1)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=frames * num_videos, desc=f"generate {size}px", unit="frame",
                   dynamic_ncols=True)
    t0 = time.time()
    try:
        for b0 in range(0, num_videos, batch_size):
            ids = list(range(b0, min(b0 + batch_size, num_videos)))
            if writer is not None:
                names = [out / (f"video_{i:04d}" + (f"_class{labels[i]}" if labels else "")
                                + ".mp4") for i in ids]
                paths.extend(names)
                writer.open(names)
            done = 0
            for chunk in plan.chunks(ids, labels, seed, overlap, matching):
                arr = _to_uint8(chunk)
                if writer is None:
                    result[ids[0]: ids[-1] + 1, done: done + arr.shape[1]] = arr
                else:
                    writer.write(arr)
                done += arr.shape[1]
                if bar is not None:
                    bar.update(arr.shape[1] * len(ids))
            if writer is not None:
                writer.close_batch()
        if writer is not None:
            writer.finish()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    stats.seconds = time.time() - t0
    stats.matching_error = matching.result()
    output = paths if out is not None else result
    return (output, stats) if return_stats else output
