"""Named metrics, with their setting in the name (the StyleGAN-V convention).

    fvd{N}_{L}f     I3D FVD: N real and N generated clips of L frames (fvd2048_16f, fvd2048_128f)
    fvdsynth_{L}f   FVD on the synthetic-set evaluator's features, clips of L frames
    issynth         Inception Score on the evaluator's class probabilities
    accsynth        class accuracy of class-conditional samples, read by the evaluator

`issynth` and `accsynth` take an optional `_{L}f` suffix (default: the run's training
length, printed with the number). The synth metrics' clip count comes from --num-videos; an fvd{N} metric
always uses the N in its name, so a printed name never misstates its protocol.
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
}

_PATTERNS = (
    (re.compile(r"fvd(\d+)_(\d+)f"), "fvd", "i3d"),
    (re.compile(r"fvdsynth_(\d+)f"), "fvd", "synth"),
    (re.compile(r"issynth(?:_(\d+)f)?"), "is", "synth"),
    (re.compile(r"accsynth(?:_(\d+)f)?"), "acc", "synth"),
)


@dataclass(frozen=True)
class MetricSpec:
    """One metric, resolved: what it measures, with which network, on what clips."""

    name: str  # as printed and logged, e.g. "fvdsynth_16f"
    kind: str  # "fvd" | "is" | "acc"
    detector: str  # "i3d" | "synth"
    frames: int  # clip length
    count: int  # generated clips (and real clips, for an FVD)

    @property
    def needs_real(self) -> bool:
        return self.kind == "fvd"


def parse_metric(name: str, default_frames: int, default_count: int) -> MetricSpec:
    """A metric name -> MetricSpec; an unknown or malformed name is a one-line CvgError."""
    key = name.strip().lower()
    for pattern, kind, detector in _PATTERNS:
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
        return MetricSpec(key, kind, detector, frames, count)
    known = ", ".join(METRIC_HELP)
    raise CvgError(f"unknown metric {name!r}: use one of {known} "
                   f"(e.g. fvd2048_16f, fvdsynth_64f, issynth, accsynth)")
