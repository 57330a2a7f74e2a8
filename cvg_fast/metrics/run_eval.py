"""`cvg eval`: a trained run's metrics at its training length and at 4x it.

Defaults are sized for a CPU: 256 generated clips (and 256 real ones per FVD); pass
--num-videos 2048 for the paper's counts. On a synthetic dataset (written by
`cvg data synth`) the default metrics are fvdsynth_{T}f, fvdsynth_{4T}f, issynth and,
for a class-conditional run, accsynth; with --i3d, fvd{N}_{T}f and fvd{N}_{4T}f too.
"""

from __future__ import annotations

import os
from pathlib import Path

from cvg_fast.errors import CvgError
from cvg_fast.metrics.registry import MetricSpec, parse_metric
from cvg_fast.metrics.sources import cascade_source
from cvg_fast.metrics.suite import MetricResult, MetricSuite, append_jsonl, format_table

DEFAULT_NUM_VIDEOS = 256  # CPU-sized; the paper's protocol is 2048


def is_synthetic_data(data: str | os.PathLike) -> bool:
    from cvg_fast.data.synthetic import read_synthetic_spec

    try:
        read_synthetic_spec(data)
    except CvgError:
        return False
    return True


def default_metric_names(train_frames: int, conditional: bool, synthetic: bool,
                         i3d: bool, num_videos: int) -> list[str]:
    names = []
    if synthetic:
        names += [f"fvdsynth_{train_frames}f", f"fvdsynth_{4 * train_frames}f", "issynth"]
        if conditional:
            names.append("accsynth")
    if i3d:
        names += [f"fvd{num_videos}_{train_frames}f", f"fvd{num_videos}_{4 * train_frames}f"]
    return names


def resolve_metrics(names: list[str] | None, data, train_frames: int, conditional: bool,
                    i3d, num_videos: int) -> list[MetricSpec]:
    if not names:
        synthetic = is_synthetic_data(data)
        if not synthetic and i3d is None:
            raise CvgError(f"{data} is not a synthetic dataset, so the synthetic-set metrics do "
                           f"not apply: pass --i3d PATH for I3D FVD (the PyTorch port's "
                           f"i3d_pretrained_400.pt or StyleGAN-V's i3d_torchscript.pt)")
        names = default_metric_names(train_frames, conditional, synthetic, i3d is not None,
                                     num_videos)
    specs = [parse_metric(n, train_frames, num_videos) for n in names]
    seen = set()
    for s in specs:
        if s.name in seen:
            raise CvgError(f"metric {s.name} is listed twice")
        seen.add(s.name)
    return specs


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
    specs = resolve_metrics(metrics, data, frames, cascade.num_classes > 0, i3d, num_videos)
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
    report = "\n".join([header, format_table({"cascade": results}, specs), *suite.describe()])
    return results, report


def training_eval(data: str | os.PathLike, cfg, level: int, i3d: str | os.PathLike | None = None,
                  num_videos: int = 128, seed: int = 0, skip_bad: bool = False,
                  detectors: dict | None = None, split: str | None = None,
                  layout: str = "auto"):
    """The metric hook of a training run: cascade -> {metric name: value}.

    Judged at the top level's length and size, so every level of a run is on one scale:
    a lower level's output is upsampled (linear in time, bilinear in space) as if the
    levels above learned nothing. FVD-synth on a synthetic dataset, I3D FVD with `i3d`.
    The metric suite (detector, real statistics) is built on the first call, on rank 0.
    detectors: networks to use instead of loading them (as in MetricSuite).
    """
    from cvg_fast.metrics.sources import bilinear_source

    if num_videos < 2:
        raise CvgError(f"--eval-videos must be at least 2 (got {num_videos})")
    top = cfg.levels[-1]
    names = []
    if i3d is not None:
        names.append(f"fvd{num_videos}_{top.frames}f")
    elif (detectors and "synth" in detectors) or is_synthetic_data(data):
        names.append(f"fvdsynth_{top.frames}f")
    else:
        raise CvgError(f"--eval-every: {data} is not a synthetic dataset; pass --i3d PATH for "
                       f"I3D FVD")
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
