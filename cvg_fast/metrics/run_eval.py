"""`cvg eval`: a trained run's metrics at its training length and at 4x it.

Defaults are sized for a CPU: 256 generated clips (and 256 real ones per FVD); pass
--num-videos 2048 for the paper's counts. On a synthetic dataset (written by
`cvg data synth`) the default metrics are fvdsynth_{T}f, fvdsynth_{4T}f, issynth, for a
class-conditional run accsynth, and the motion ratios speedsynth_ and flickersynth_ at
{T}f and {4T}f; on other data flow_{T}f and flow_{4T}f; with --i3d, fvd{N}_{T}f and
fvd{N}_{4T}f too. The defaults shrink to what the data folder serves (fewer videos than
--num-videos, videos shorter than 4T), said in one line; metrics named with --metrics
are scored as asked or refused in one line.
"""

from __future__ import annotations

import os
from pathlib import Path

from cvg_fast.errors import CvgError
from cvg_fast.metrics.motion import MOTION_WINDOW
from cvg_fast.metrics.registry import MetricSpec, parse_metric
from cvg_fast.metrics.sources import FolderLengths, cascade_source
from cvg_fast.metrics.suite import (MetricResult, MetricSuite, append_jsonl, format_motion,
                                    format_table, motion_real_frames)

DEFAULT_NUM_VIDEOS = 256  # CPU-sized; the paper's protocol is 2048


def is_synthetic_data(data: str | os.PathLike) -> bool:
    from cvg_fast.data.synthetic import read_synthetic_spec

    try:
        read_synthetic_spec(data)
    except CvgError:
        return False
    return True


def motion_lengths(train_frames: int) -> list[int]:
    """The training length and 4x it, where they hold a 16-frame motion window."""
    return [f for f in dict.fromkeys((train_frames, 4 * train_frames)) if f >= MOTION_WINDOW]


def default_metric_names(train_frames: int, conditional: bool, synthetic: bool,
                         i3d: bool, num_videos: int) -> list[str]:
    names = []
    lengths = motion_lengths(train_frames)
    if synthetic:
        names += [f"fvdsynth_{train_frames}f", f"fvdsynth_{4 * train_frames}f", "issynth"]
        if conditional:
            names.append("accsynth")
        names += [f"{m}_{f}f" for m in ("speedsynth", "flickersynth") for f in lengths]
    if i3d:
        names += [f"fvd{num_videos}_{train_frames}f", f"fvd{num_videos}_{4 * train_frames}f"]
    if not synthetic:
        names += [f"flow_{f}f" for f in lengths]
    return names


def resolve_metrics(names: list[str] | None, data, train_frames: int, conditional: bool,
                    i3d, num_videos: int, stride: int = 1, skip_bad: bool = False,
                    split: str | None = None, layout: str = "auto",
                    ) -> tuple[list[MetricSpec], str | None]:
    """(specs, one line saying what the defaults shrank or dropped to fit the data, or
    None). Names given are kept as they are: the suite refuses what the data cannot serve."""
    note = None
    if not names:
        synthetic = is_synthetic_data(data)
        names = default_metric_names(train_frames, conditional, synthetic, i3d is not None,
                                     num_videos)
        if not names:
            raise CvgError(f"{data} is not a synthetic dataset and the run's length "
                           f"{train_frames} holds no {MOTION_WINDOW}-frame motion window: pass "
                           f"--i3d PATH for I3D FVD")
        lengths = FolderLengths(data, stride, skip_bad, split=split, layout=layout)
        names, num_videos, note = fit_defaults(names, lengths, train_frames, conditional,
                                               synthetic, i3d is not None, num_videos)
        if not synthetic and i3d is None:
            note = "; ".join(filter(None, [note, "no FVD: not a synthetic dataset, pass --i3d "
                                                  "PATH for I3D FVD"]))
    specs = [parse_metric(n, train_frames, num_videos) for n in names]
    seen = set()
    for s in specs:
        if s.name in seen:
            raise CvgError(f"metric {s.name} is listed twice")
        seen.add(s.name)
    return specs, note


def fit_defaults(names: list[str], lengths: FolderLengths, train_frames: int,
                 conditional: bool, synthetic: bool, i3d: bool, num_videos: int,
                 ) -> tuple[list[str], int, str | None]:
    """The default metrics a folder serves: (names, clip count, the line that says what
    changed or None). --num-videos comes down to the usable videos, an FVD whose clips the
    videos are too short for is dropped, a motion reference comes from shorter clips."""
    specs = [parse_metric(n, train_frames, num_videos) for n in names]
    shortest = min(s.frames if s.kind == "fvd" else MOTION_WINDOW
                   for s in specs if s.needs_real)
    usable = lengths.served(shortest)
    if usable < 2:
        raise CvgError(f"{lengths.root} has {lengths.describe()}: the default metrics need at "
                       f"least 2 real clips of {shortest} frames")
    count = min(num_videos, usable)
    if count < num_videos:
        names = default_metric_names(train_frames, conditional, synthetic, i3d, count)
        specs = [parse_metric(n, train_frames, count) for n in names]
    parts = [f"--num-videos {num_videos} -> {count}"] if count < num_videos else []
    kept, shorter = [], {}
    for s in specs:
        if s.kind == "fvd" and lengths.served(s.frames) < count:
            parts.append(f"{s.name} dropped (needs {s.frames}-frame clips)")
            continue
        if s.kind == "motion":
            frames = motion_real_frames(s, lengths)
            if frames is None:
                parts.append(f"{s.name} dropped (needs {MOTION_WINDOW}-frame clips)")
                continue
            if frames < s.frames:
                shorter.setdefault(frames, []).append(s.name)
        kept.append(s.name)
    for frames, motion in shorter.items():
        owners = " and ".join(f"{n}'s" for n in motion)
        refs = "reference" if len(motion) == 1 else "references"
        parts.append(f"{owners} real {refs} from {frames}-frame clips")
    note = f"data has {lengths.describe()}: " + "; ".join(parts) if parts else None
    return kept, count, note


def evaluate_run(run: str | os.PathLike, data: str | os.PathLike, metrics: list[str] | None = None,
                 i3d: str | os.PathLike | None = None, num_videos: int = DEFAULT_NUM_VIDEOS,
                 seed: int = 0, device=None, batch_size: int = 16, overlap: float = 0.0,
                 progress: bool = True, skip_bad: bool = False, log: bool = True,
                 detectors: dict | None = None, split: str | None = None,
                 layout: str = "auto") -> tuple[dict[str, MetricResult], str]:
    """Generate through the run's cascade and score it; (results, printable report).

    Appends one JSON line per metric to RUN/metrics.jsonl when `log`. detectors:
    networks to use instead of loading them (as in MetricSuite).
    """
    from cvg_fast.sampling import load_cascade

    if num_videos < 2:
        raise CvgError(f"--num-videos must be at least 2 (got {num_videos})")
    cascade = load_cascade(run, device=device)
    cfg = cascade.cfg
    frames = cfg.levels[cascade.num_levels - 1].frames
    specs, note = resolve_metrics(metrics, data, frames, cascade.num_classes > 0, i3d,
                                  num_videos, cfg.frame_stride, skip_bad, split, layout)
    suite = MetricSuite(specs, data, size=cascade.size, stride=cfg.frame_stride, i3d=i3d,
                        device=device or next(cascade.parameters()).device, seed=seed,
                        progress=progress, skip_bad=skip_bad, batch_size=batch_size,
                        detectors=detectors, split=split,
                        layout=layout)
    source = cascade_source(cascade, seed=seed, batch_size=batch_size, overlap=overlap)
    results = suite.evaluate(source, label="cascade")
    if log:
        append_jsonl(Path(run) / "metrics.jsonl", results, run=str(Path(run).absolute()),
                     levels=cascade.num_levels, overlap=overlap)
    header = (f"{Path(run)}: {cascade.num_levels} levels, {frames} frames at {cascade.size}px "
              f"(training length {frames}, 4x = {4 * frames}), "
              + (f"{cascade.num_classes} classes" if cascade.num_classes else "unconditional"))
    rows = {"cascade": results}
    report = "\n".join(filter(None, [header, note, format_table(rows, specs),
                                     format_motion(rows, specs), *suite.describe()]))
    return results, report


def training_eval(data: str | os.PathLike, cfg, level: int, i3d: str | os.PathLike | None = None,
                  num_videos: int = 128, seed: int = 0, skip_bad: bool = False,
                  detectors: dict | None = None, split: str | None = None,
                  layout: str = "auto"):
    """The metric hook of a training run: cascade -> {metric name: value}.

    Judged at the top level's length and size, so every level of a run is on one scale:
    a lower level's output is upsampled (linear in time, bilinear in space) as if the
    levels above learned nothing. FVD-synth on a synthetic dataset, I3D FVD with `i3d`;
    on a synthetic dataset also the speed and flicker ratios at the top length and 4x.
    The metric suite (detector, real statistics) is built on the first call, on rank 0.
    detectors: networks to use instead of loading them (as in MetricSuite).
    """
    from cvg_fast.metrics.sources import bilinear_source

    if num_videos < 2:
        raise CvgError(f"--eval-videos must be at least 2 (got {num_videos})")
    top = cfg.levels[-1]
    names = []
    synthetic = bool(detectors and "synth" in detectors) or is_synthetic_data(data)
    if i3d is not None:
        names.append(f"fvd{num_videos}_{top.frames}f")
    elif synthetic:
        names.append(f"fvdsynth_{top.frames}f")
    else:
        raise CvgError(f"--eval-every: {data} is not a synthetic dataset; pass --i3d PATH for "
                       f"I3D FVD")
    if synthetic:  # after the FVD: the first metric is the one best.pt is chosen on
        names += [f"{m}_{f}f" for m in ("speedsynth", "flickersynth")
                  for f in motion_lengths(top.frames)]
    specs = [parse_metric(n, top.frames, num_videos) for n in names]
    state: dict = {}

    def evaluate(cascade) -> dict:
        if "suite" not in state:
            state["suite"] = MetricSuite(specs, data, size=top.size, stride=cfg.frame_stride,
                                         i3d=i3d, device=next(cascade.parameters()).device,
                                         seed=seed, progress=False, skip_bad=skip_bad,
                                         detectors=detectors, split=split, layout=layout)
        if cascade.num_levels == cfg.num_levels:
            source = cascade_source(cascade, seed=seed)
        else:
            source = bilinear_source(cascade, cascade.num_levels, seed=seed)
        results = state["suite"].evaluate(source, label=f"level {cascade.num_levels}")
        return {name: r.value for name, r in results.items()}

    return evaluate
