"""Metrics over a real data folder: detectors, cached real statistics, scoring sources.

    suite = MetricSuite(specs, data="cvg_demo/data", size=32)
    results = suite.evaluate(cascade_source(cascade), label="cascade")   # {name: MetricResult}

Real statistics (count, sum, sum of outer products in float64) are cached in the data's
cache folder under a hash of every option that changes them: the files (with sizes and
mtimes), the detector and its hash, clip length, stride, size, count and seed. Generated
videos are streamed batch by batch: features are accumulated, never all kept.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cvg_fast.errors import CvgError
from cvg_fast.metrics.cache import cache_dir, options_key
from cvg_fast.metrics.feature_net import VideoFeatureNet
from cvg_fast.metrics.frechet import FeatureStats, frechet_distance, inception_score
from cvg_fast.metrics.registry import MetricSpec
from cvg_fast.metrics.sources import RealClips, VideoSource

__all__ = ["MetricResult", "MetricSuite", "append_jsonl", "format_table"]

_STATS_FORMAT = "cvg_fast.real_stats/1"
CLIP_SAMPLING = ("one clip per video, videos drawn without replacement, seeded random start; "
                 "generated videos: their first L frames")
IS_SPLITS = 10


@dataclass
class MetricResult:
    """One number and the protocol that produced it."""

    name: str
    value: float
    std: float | None = None  # IS: std over splits
    protocol: dict = field(default_factory=dict)

    def formatted(self) -> str:
        if self.name.startswith("acc"):
            return f"{100 * self.value:.1f}%"
        if self.std is not None:
            return f"{self.value:.2f}±{self.std:.2f}"
        return f"{self.value:.2f}" if abs(self.value) >= 1 else f"{self.value:.3g}"


class MetricSuite:
    """Detectors and real statistics for `specs`, against the videos in `data`.

    size: frame size the real clips are read at (the cascade's output size); stride:
    source frames between clip frames (the run's frame_stride); i3d: weight file for
    the fvd{N}_{L}f metrics; seed: picks the real clips; detectors: networks to use
    instead of loading them ({"i3d": ..., "synth": ...}).
    """

    def __init__(self, specs: list[MetricSpec], data: str | os.PathLike, size: int,
                 stride: int = 1, i3d: str | os.PathLike | None = None, device="cpu",
                 seed: int = 0, progress: bool = True, skip_bad: bool = False,
                 batch_size: int = 16, detectors: dict[str, VideoFeatureNet] | None = None,
                 split: str | None = None, layout: str = "auto"):
        if not specs:
            raise CvgError("no metrics to compute")
        self.specs = list(specs)
        self.data = Path(data).expanduser().absolute()
        if not self.data.is_dir():
            raise CvgError(f"data folder {self.data} does not exist: pass --data with the "
                           f"folder of real videos the run was trained on")
        self.size, self.stride, self.i3d, self.device = size, stride, i3d, device
        self.seed, self.progress, self.skip_bad, self.batch_size = seed, progress, skip_bad, batch_size
        self._nets: dict[str, VideoFeatureNet] = dict(detectors or {})
        self._real: dict[tuple, tuple[FeatureStats, bool]] = {}
        self._clips: dict[int, RealClips] = {}
        self.split, self.layout = split, layout  # which real videos (data.layouts)
        for spec in self.specs:  # fail before any long work (training an evaluator, I3D)
            if spec.needs_real:
                self.real_clips(spec.frames).check(spec.count)
        for spec in self.specs:
            self.detector(spec.detector)

    # ---------------------------------------------------------------- networks
    def detector(self, kind: str) -> VideoFeatureNet:
        if kind not in self._nets:
            if kind == "i3d":
                if self.i3d is None:
                    names = ", ".join(s.name for s in self.specs if s.detector == "i3d")
                    raise CvgError(f"{names} need I3D weights: pass --i3d PATH (the PyTorch "
                                   f"port's i3d_pretrained_400.pt or StyleGAN-V's "
                                   f"i3d_torchscript.pt)")
                from cvg_fast.metrics.i3d import load_i3d

                self._nets[kind] = load_i3d(self.i3d, device=self.device)
            elif kind == "synth":
                from cvg_fast.metrics.synth_evaluator import load_synth_evaluator

                self._nets[kind] = load_synth_evaluator(self.data, device=self.device,
                                                        progress=self.progress)
            else:
                raise CvgError(f"unknown detector {kind!r}")
        return self._nets[kind]

    # ---------------------------------------------------------- real features
    def real_clips(self, frames: int) -> RealClips:
        if frames not in self._clips:
            self._clips[frames] = RealClips(self.data, frames, self.size, self.stride, self.seed,
                                            self.skip_bad, progress=self.progress,
                                            split=self.split, layout=self.layout)
        return self._clips[frames]

    def real_stats(self, spec: MetricSpec) -> tuple[FeatureStats, bool]:
        """(statistics of `spec.count` real clips, whether they came from the cache)."""
        key = (spec.detector, spec.frames, spec.count)
        if key in self._real:
            return self._real[key]
        net = self.detector(spec.detector)
        clips = self.real_clips(spec.frames)
        clips.check(spec.count)
        options = {"format": _STATS_FORMAT, "data": str(self.data), "files": clips.signature(),
                   "detector": net.name, "detector_hash": net.detector_hash,
                   "preprocessing": net.preprocessing, "windows": net.clip_frames,
                   "frames": spec.frames, "stride": self.stride, "size": self.size,
                   "count": spec.count, "seed": self.seed}
        path = cache_dir(self.data) / (f"stats-{spec.detector}-{spec.frames}f-{spec.count}-"
                                       f"{options_key(options)}.npz")
        if path.is_file():
            with np.load(path) as z:
                stats = FeatureStats.from_state(z)
            self._real[key] = (stats, True)
            return self._real[key]
        stats = FeatureStats(net.feature_dim)
        bar = self._bar(spec.count, f"real features {spec.detector} {spec.frames}f")
        for arr, _ in clips(spec.count, batch_size=self.batch_size):
            feats, _ = net.score(arr)
            stats.update(feats)
            bar.update(len(arr))
        bar.close()
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **stats.state())
        os.replace(tmp, path)
        self._real[key] = (stats, False)
        return self._real[key]

    def _bar(self, total: int, desc: str):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="clip", dynamic_ncols=True,
                    disable=not self.progress)

    # --------------------------------------------------------------- scoring
    def evaluate(self, source: VideoSource, label: str = "cascade") -> dict[str, MetricResult]:
        """Every metric on the videos of `source`; real statistics computed first (cached)."""
        real = {s.name: self.real_stats(s) for s in self.specs if s.needs_real}
        count = max(s.count for s in self.specs)
        frames = max(s.frames for s in self.specs)
        groups = sorted({(s.detector, s.frames) for s in self.specs})
        fake = {s.name: FeatureStats(self.detector(s.detector).feature_dim)
                for s in self.specs if s.kind == "fvd"}
        probs = {s.name: [] for s in self.specs if s.kind in ("is", "acc")}
        labels_seen: list[int] = []
        have_labels = True
        done = 0
        t0 = time.time()
        bar = self._bar(count, f"features {label}")
        for arr, labels in source(count, frames):
            if arr.shape[1] < frames:
                raise CvgError(f"{label}: videos have {arr.shape[1]} frames, {frames} needed")
            out = {}
            for det, length in groups:
                rows = max(s.count for s in self.specs if (s.detector, s.frames) == (det, length))
                take = min(len(arr), rows - done)
                if take > 0:
                    out[det, length] = self.detector(det).score(arr[:take, :length])
            for s in self.specs:
                take = min(len(arr), s.count - done)
                if take <= 0:
                    continue
                feats, p = out[s.detector, s.frames]
                if s.kind == "fvd":
                    fake[s.name].update(feats[:take])
                else:
                    probs[s.name].append(p[:take].numpy())
            if labels is None:
                have_labels = False
            else:
                labels_seen.extend(labels)
            done += len(arr)
            bar.update(len(arr))
            if done >= count:
                break
        bar.close()
        if done < count:
            raise CvgError(f"{label}: only {done} videos to score, {count} asked")
        seconds = time.time() - t0
        results = {}
        for s in self.specs:
            net = self.detector(s.detector)
            proto = {"source": label, "num_fake": s.count, "frames": s.frames,
                     "frame_stride": self.stride, "size": self.size, "detector": net.name,
                     "detector_hash": net.detector_hash, "preprocessing": net.preprocessing,
                     "windows": net.clip_frames, "seed": self.seed,
                     "seconds_scoring": round(seconds, 2)}
            if s.kind == "fvd":
                (rstats, hit) = real[s.name]
                mu_r, cov_r = rstats.mean_cov()
                mu_f, cov_f = fake[s.name].mean_cov()
                value = frechet_distance(mu_r, cov_r, mu_f, cov_f)
                proto |= {"num_real": rstats.count, "real_data": str(self.data),
                          "clip_sampling": CLIP_SAMPLING, "real_stats_cached": hit,
                          "feature_dim": net.feature_dim}
                results[s.name] = MetricResult(s.name, value, None, proto)
            elif s.kind == "is":
                mean, std = inception_score(np.concatenate(probs[s.name]), IS_SPLITS)
                proto |= {"splits": IS_SPLITS, "num_classes": net.num_classes}
                results[s.name] = MetricResult(s.name, mean, std, proto)
            else:
                if not have_labels:
                    raise CvgError(f"{s.name} needs class-conditional videos: this source is "
                                   f"unconditional; leave {s.name} out of --metrics")
                p = np.concatenate(probs[s.name])
                y = np.asarray(labels_seen[: len(p)])
                if y.max(initial=0) >= p.shape[1]:
                    raise CvgError(f"{s.name}: class {int(y.max())} but the evaluator knows "
                                   f"{p.shape[1]} classes: train on the same synthetic dataset")
                proto |= {"num_classes": net.num_classes}
                results[s.name] = MetricResult(s.name, float((p.argmax(1) == y).mean()), None,
                                               proto)
        return results

    def describe(self) -> list[str]:
        """Protocol lines printed under every table."""
        lines = []
        for kind in sorted({s.detector for s in self.specs}):
            lines.append(f"detector: {self.detector(kind).describe()}")
        lines.append(f"real clips: {self.data} at {self.size}px, frame stride {self.stride}; "
                     f"{CLIP_SAMPLING}; seed {self.seed}")
        return lines


def format_table(rows: dict[str, dict[str, MetricResult]], specs: list[MetricSpec]) -> str:
    """Rows = sources (real / bilinear / cascade ...), columns = metrics, plus clip counts."""
    names = [s.name for s in specs]
    width = max([10] + [len(n) + 2 for n in names])
    head = f"{'':<10}" + "".join(f"{n:>{width}}" for n in names)
    lines = [head, "-" * len(head)]
    for label, res in rows.items():
        lines.append(f"{label:<10}" + "".join(
            f"{res[n].formatted() if n in res else '-':>{width}}" for n in names))
    counts = []
    for s in specs:
        r = next((res[s.name] for res in rows.values() if s.name in res), None)
        if r is not None:
            real = r.protocol.get("num_real")
            counts.append(f"{s.name}: {s.frames} frames, {s.count} generated"
                          + (f" vs {real} real clips" if real else " clips"))
    return "\n".join(lines + ["clips: " + "; ".join(counts)])


def append_jsonl(path: str | os.PathLike, results: dict[str, MetricResult], **extra) -> None:
    """One JSON line per metric: {"metric", "value", "std", ...protocol, ...extra}."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        for r in results.values():
            d = asdict(r)
            row = {"metric": d.pop("name"), "value": d.pop("value"), "std": d.pop("std"),
                   **d.pop("protocol"), **extra, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            f.write(json.dumps(row) + "\n")
