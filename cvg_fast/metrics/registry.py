"""Named metrics, with their setting in the name (the StyleGAN-V convention).

    fvd{N}_{L}f        I3D FVD: N real and N generated clips of L frames (fvd2048_16f, fvd2048_128f)
    fvdsynth_{L}f      FVD on the synthetic-set evaluator's features, clips of L frames
    issynth            Inception Score on the evaluator's class probabilities
    accsynth           class accuracy of class-conditional samples, read by the evaluator
    speedsynth_{L}f    object speed per 16-frame window, read by the evaluator's velocity head
    flickersynth_{L}f  mean |frame difference| per 16-frame window (no network: any data;
                       "synth" only to sit beside speedsynth)
    flow_{L}f          optical-flow magnitude per 16-frame window (Farneback): motion on real
                       datasets, where no evaluator exists

`issynth` and `accsynth` take an optional `_{L}f` suffix (default: the run's training
length, printed with the number). The synth metrics' clip count comes from --num-videos; an fvd{N} metric
always uses the N in its name, so a printed name never misstates its protocol. The motion
metrics (`cvg_fast.metrics.motion`) need L >= 16; each window is divided by real clips'
same window, and the value is the worst window's ratio (furthest from 1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cvg_fast.errors import CvgError

__all__ = ["MetricSpec", "parse_metric", "METRIC_HELP"]

METRIC_HELP = {
    "fvd{N}_{L}f": "Fréchet Video Distance on I3D logits, N real and N fake clips of L frames "
                   "(needs --i3d)",
    "fvdsynth_{L}f": "FVD on the synthetic-set evaluator's features, clips of L frames",
    "issynth[_{L}f]": "Inception Score on the evaluator's class probabilities",
    "accsynth[_{L}f]": "class accuracy of class-conditional samples, read by the evaluator",
    "speedsynth_{L}f": "object speed per 16-frame window (the evaluator's velocity head) as a "
                       "ratio to real; value: the worst window",
    "flickersynth_{L}f": "mean |frame difference| per 16-frame window as a ratio to real; "
                         "value: the worst window",
    "flow_{L}f": "optical-flow magnitude per 16-frame window (Farneback) as a ratio to real, "
                 "for real datasets; value: the worst window",
}

# pattern, kind, detector, measure (motion metrics only)
_PATTERNS = (
    (re.compile(r"fvd(\d+)_(\d+)f"), "fvd", "i3d", ""),
    (re.compile(r"fvdsynth_(\d+)f"), "fvd", "synth", ""),
    (re.compile(r"issynth(?:_(\d+)f)?"), "is", "synth", ""),
    (re.compile(r"accsynth(?:_(\d+)f)?"), "acc", "synth", ""),
    (re.compile(r"speedsynth_(\d+)f"), "motion", "synth", "speed"),
    (re.compile(r"flickersynth_(\d+)f"), "motion", "none", "flicker"),
    (re.compile(r"flow_(\d+)f"), "motion", "none", "flow"),
)
MOTION_MIN_FRAMES = 16  # one window of motion.MOTION_WINDOW frames


@dataclass(frozen=True)
class MetricSpec:
    """One metric, resolved: what it measures, with which network, on what clips."""

    name: str  # as printed and logged, e.g. "fvdsynth_16f"
    kind: str  # "fvd" | "is" | "acc" | "motion"
    detector: str  # "i3d" | "synth" | "none" (read from the pixels alone)
    frames: int  # clip length
    count: int  # generated clips (and real clips, for an FVD or a motion metric)
    measure: str = ""  # motion metrics: "speed" | "flicker" | "flow"

    @property
    def needs_real(self) -> bool:
        return self.kind in ("fvd", "motion")


def parse_metric(name: str, default_frames: int, default_count: int) -> MetricSpec:
    """A metric name -> MetricSpec; an unknown or malformed name is a one-line CvgError."""
    key = name.strip().lower()
    for pattern, kind, detector, measure in _PATTERNS:
        m = pattern.fullmatch(key)
        if not m:
            continue
        if detector == "i3d":
            count, frames = int(m.group(1)), int(m.group(2))
        else:
            count = default_count
            frames = int(m.group(1)) if m.group(1) else default_frames
        if frames < 1 or count < 2:
            raise CvgError(f"metric {name!r}: needs at least 1 frame and 2 clips")
        if kind == "motion" and frames < MOTION_MIN_FRAMES:
            raise CvgError(f"metric {name!r}: motion is measured over {MOTION_MIN_FRAMES}-frame "
                           f"windows: use clips of at least {MOTION_MIN_FRAMES} frames")
        return MetricSpec(key, kind, detector, frames, count, measure)
    known = ", ".join(METRIC_HELP)
    raise CvgError(f"unknown metric {name!r}: use one of {known} "
                   f"(e.g. fvd2048_16f, fvdsynth_64f, issynth, accsynth, speedsynth_64f)")
