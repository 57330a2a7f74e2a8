"""Metrics over a real data folder: detectors, cached real statistics, scoring sources.

    suite = MetricSuite(specs, data="cvg_demo/data", size=32)
    results = suite.evaluate(cascade_source(cascade), label="cascade")   # {name: MetricResult}

Real statistics (count, sum, sum of outer products in float64) are cached in the data's
cache folder under a hash of every option that changes them: the files (with sizes and
mtimes), the detector and its hash, clip length, stride, size, count and seed; so are the
motion metrics' real per-window means. Generated videos are streamed batch by batch:
features and per-window sums are accumulated, never all kept.

Motion metrics (`motion`): a real clip of L frames per video gives the real reference of
each 16-frame window; when the folder's videos are shorter than L, the longest multiple
of 16 frames it serves does (said in the protocol and in `describe`), and later windows
are divided by the mean real window (real motion is stationary).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cvg_fast.errors import CvgError
from cvg_fast.metrics import motion as mo
from cvg_fast.metrics.cache import cache_dir, options_key
from cvg_fast.metrics.feature_net import VideoFeatureNet
from cvg_fast.metrics.frechet import FeatureStats, frechet_distance, inception_score
from cvg_fast.metrics.registry import MetricSpec
from cvg_fast.metrics.sources import FolderLengths, RealClips, VideoSource

__all__ = ["MetricResult", "MetricSuite", "append_jsonl", "format_motion", "format_table",
           "motion_real_frames"]

_STATS_FORMAT = "cvg_fast.real_stats/1"
_MOTION_FORMAT = "cvg_fast.real_motion/1"
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
        if "ratios" in self.protocol:  # a motion metric: the worst window's ratio to real
            return f"{self.value:.2f}x"
        if self.name.startswith("acc"):
            return f"{100 * self.value:.1f}%"
        if self.std is not None:
            return f"{self.value:.2f}±{self.std:.2f}"
        return f"{self.value:.2f}" if abs(self.value) >= 1 else f"{self.value:.3g}"


def motion_real_frames(spec: MetricSpec, lengths: FolderLengths) -> int | None:
    """Frames of the real clips behind a motion metric: L, else the longest multiple of 16
    below it that `spec.count` videos serve; None when not even 16 frames are served."""
    w = mo.MOTION_WINDOW
    for frames in dict.fromkeys([spec.frames, *range(spec.frames // w * w, w - 1, -w)]):
        if lengths.served(frames) >= spec.count:
            return frames
    return None


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
        self._motion: dict[tuple, tuple[np.ndarray, bool]] = {}
        self._clips: dict[int, RealClips] = {}
        self._lengths: FolderLengths | None = None
        self.split, self.layout = split, layout  # which real videos (data.layouts)
        for spec in self.specs:  # fail before any long work (training an evaluator, I3D)
            if spec.needs_real:
                self.real_clips(self.real_frames(spec)).check(spec.count)
        for spec in self.specs:
            if spec.detector != "none":
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
    def lengths(self) -> FolderLengths:
        if self._lengths is None:
            self._lengths = FolderLengths(self.data, self.stride, self.skip_bad, self.progress,
                                          self.split, self.layout)
        return self._lengths

    def real_frames(self, spec: MetricSpec) -> int:
        """Frames of the real clips `spec` compares with: its own for an FVD (else a one-line
        error); for a motion metric the longest of L, or multiples of 16 below it, that
        `spec.count` videos serve."""
        lengths = self.lengths()
        if spec.kind != "motion":
            if lengths.served(spec.frames) == 0:
                hint = (", or pass --skip-bad-videos to use those long enough"
                        if lengths.lengths[0] >= spec.frames else "")
                raise CvgError(f"{spec.name} needs real clips of {spec.frames} frames but "
                               f"{self.data} has {lengths.describe()}: leave {spec.name} out "
                               f"of --metrics or use longer videos{hint}")
            return spec.frames
        frames = motion_real_frames(spec, lengths)
        if frames is not None:
            return frames
        w = mo.MOTION_WINDOW
        n = lengths.served(w)
        fix = f"pass --num-videos {n} or fewer" if n >= 2 else f"use videos of {w}+ frames"
        raise CvgError(f"{spec.name} needs {spec.count} real clips of at least {w} frames but "
                       f"{self.data} has {lengths.describe()}: {fix}")

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
        _save_npz(path, **stats.state())
        self._real[key] = (stats, False)
        return self._real[key]

    def real_motion(self, spec: MetricSpec) -> tuple[np.ndarray, bool, int]:
        """(real per-window means (n_win,), whether cached, real clip frames) of a motion
        metric, over `spec.count` real clips; cached like `real_stats`. Every measure of
        the suite on the same real clips is taken in the same pass over them."""
        frames = self.real_frames(spec)
        key = (spec.measure, frames, spec.count)
        if key in self._motion:
            return (*self._motion[key], frames)
        clips = self.real_clips(frames)
        clips.check(spec.count)
        same = [s.measure for s in self.specs if s.kind == "motion" and s.count == spec.count
                and self.real_frames(s) == frames]
        todo = {}  # measure -> cache path, for the measures not cached yet
        for m in dict.fromkeys(same):
            net = self._motion_net(m)
            options = {"format": _MOTION_FORMAT, "version": mo.MOTION_VERSION,
                       "data": str(self.data), "files": clips.signature(), "measure": m,
                       "detector": net.name if net else mo.measure_method(m),
                       "detector_hash": net.detector_hash if net else "",
                       "window": mo.MOTION_WINDOW, "frames": frames, "stride": self.stride,
                       "size": self.size, "count": spec.count, "seed": self.seed}
            path = cache_dir(self.data) / (f"motion-{m}-{frames}f-{spec.count}-"
                                           f"{options_key(options)}.npz")
            if path.is_file():
                with np.load(path) as z:
                    self._motion[m, frames, spec.count] = (z["means"].copy(), True)
            else:
                todo[m] = path
        if todo:
            accs = {m: mo.MotionAccumulator() for m in todo}
            bar = self._bar(spec.count, f"real {'+'.join(todo)} {frames}f")
            for arr, _ in clips(spec.count, batch_size=self.batch_size):
                for m, acc in accs.items():
                    acc.update(mo.measure_windows(m, arr, self._motion_net(m)))
                bar.update(len(arr))
            bar.close()
            for m, path in todo.items():
                _save_npz(path, means=accs[m].means(), count=accs[m].count)
                self._motion[m, frames, spec.count] = (accs[m].means(), False)
        return (*self._motion[key], frames)

    def _motion_net(self, measure: str) -> VideoFeatureNet | None:
        """The network a motion measure reads (speed: the evaluator's velocity head)."""
        return self.detector("synth") if measure == "speed" else None

    def _bar(self, total: int, desc: str):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="clip", dynamic_ncols=True,
                    disable=not self.progress)

    # --------------------------------------------------------------- scoring
    def evaluate(self, source: VideoSource, label: str = "cascade") -> dict[str, MetricResult]:
        """Every metric on the videos of `source`; real statistics computed first (cached)."""
        real = {s.name: self.real_stats(s) for s in self.specs if s.kind == "fvd"}
        real_motion = {s.name: self.real_motion(s) for s in self.specs if s.kind == "motion"}
        count = max(s.count for s in self.specs)
        frames = max(s.frames for s in self.specs)
        nets = [s for s in self.specs if s.kind != "motion"]
        groups = sorted({(s.detector, s.frames) for s in nets})
        fake = {s.name: FeatureStats(self.detector(s.detector).feature_dim)
                for s in self.specs if s.kind == "fvd"}
        probs = {s.name: [] for s in self.specs if s.kind in ("is", "acc")}
        motion = [s for s in self.specs if s.kind == "motion"]
        measures: dict[str, tuple[int, int]] = {}  # measure -> (frames, videos) it is run on
        for s in motion:
            f, n = measures.get(s.measure, (0, 0))
            measures[s.measure] = (max(f, s.frames), max(n, s.count))
        moving = {s.name: mo.MotionAccumulator() for s in motion}
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
                rows = max(s.count for s in nets if (s.detector, s.frames) == (det, length))
                take = min(len(arr), rows - done)
                if take > 0:
                    out[det, length] = self.detector(det).score(arr[:take, :length])
            for s in nets:
                take = min(len(arr), s.count - done)
                if take <= 0:
                    continue
                feats, p = out[s.detector, s.frames]
                if s.kind == "fvd":
                    fake[s.name].update(feats[:take])
                else:
                    probs[s.name].append(p[:take].numpy())
            per_window = {}  # one measurement per measure, at its longest clip: shared
            for measure, (length, rows) in measures.items():
                take = min(len(arr), rows - done)
                if take > 0:
                    per_window[measure] = mo.measure_windows(measure, arr[:take, :length],
                                                             self._motion_net(measure))
            for s in motion:
                take = min(len(arr), s.count - done)
                if take > 0:
                    n_win = s.frames // mo.MOTION_WINDOW
                    moving[s.name].update(per_window[s.measure][:take, :n_win])
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
            proto = {"source": label, "num_fake": s.count, "frames": s.frames,
                     "frame_stride": self.stride, "size": self.size, **self._detector_protocol(s),
                     "seed": self.seed, "seconds_scoring": round(seconds, 2)}
            if s.kind == "motion":
                real_pw, hit, real_frames = real_motion[s.name]
                fake_pw = moving[s.name].means()
                ratios = mo.window_ratios(fake_pw, real_pw)
                proto |= {"window": mo.MOTION_WINDOW,
                          "units": mo.measure_units(s.measure, self.size),
                          "ratios": [float(r) for r in ratios],
                          "fake_per_window": [float(v) for v in fake_pw],
                          "real_per_window": [float(v) for v in real_pw],
                          "num_real": s.count, "real_frames": real_frames,
                          "real_data": str(self.data), "clip_sampling": CLIP_SAMPLING,
                          "real_stats_cached": hit}
                results[s.name] = MetricResult(s.name, mo.worst_ratio(ratios), None, proto)
                continue
            net = self.detector(s.detector)
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

    def _detector_protocol(self, s: MetricSpec) -> dict:
        if s.detector == "none":
            return {"detector": mo.measure_method(s.measure), "detector_hash": "",
                    "preprocessing": f"at {self.size}px", "windows": mo.MOTION_WINDOW}
        net = self.detector(s.detector)
        return {"detector": net.name, "detector_hash": net.detector_hash,
                "preprocessing": net.preprocessing, "windows": net.clip_frames}

    def describe(self) -> list[str]:
        """Protocol lines printed under every table."""
        lines = []
        for kind in sorted({s.detector for s in self.specs} - {"none"}):
            lines.append(f"detector: {self.detector(kind).describe()}")
        lines.append(f"real clips: {self.data} at {self.size}px, frame stride {self.stride}; "
                     f"{CLIP_SAMPLING}; seed {self.seed}")
        motion = [s for s in self.specs if s.kind == "motion"]
        if motion:
            how = {"speed": "speed: the evaluator's velocity head",
                   "flicker": f"flicker: {mo.measure_method('flicker')}",
                   "flow": "flow: Farneback optical flow on grey frames"}
            used = ", ".join(how[m] for m in dict.fromkeys(s.measure for s in motion))
            lines.append(f"motion: per {mo.MOTION_WINDOW}-frame window, generated / real in the "
                         f"same window (past the real clips' length: / the mean real window); "
                         f"value = the window furthest from 1x; {used}")
            short = {}
            for s in motion:
                f = self.real_frames(s)
                if f < s.frames:
                    short.setdefault(f, []).append(s.name)
            for f, names in short.items():
                lines.append(f"motion: {', '.join(names)}: real reference from {f}-frame clips "
                             f"({self.lengths().describe()} in {self.data})")
        return lines


def _save_npz(path: Path, **arrays) -> None:
    """Write `path` atomically (a reader sees the old file or the whole new one); a failed
    write leaves no temporary file behind."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def format_motion(rows: dict[str, dict[str, MetricResult]], specs: list[MetricSpec]) -> str:
    """Every motion metric's per-window ratios, one line per row (source); "" if none, e.g.
    `speedsynth_64f  cascade   0.41 0.22 0.21 0.22  (worst 0.21; real 1.59 px/frame at 32px)`."""
    motion = [s for s in specs if s.kind == "motion"]
    if not motion:
        return ""
    name_w = max(len(s.name) for s in motion) + 2
    label_w = max([10] + [len(label) + 2 for label in rows])
    lines = []
    for s in motion:
        for label, res in rows.items():
            r = res.get(s.name)
            if r is None:
                continue
            ratios = " ".join(f"{x:.2f}" for x in r.protocol["ratios"])
            real = float(np.mean(r.protocol["real_per_window"]))
            lines.append(f"{s.name:<{name_w}}{label:<{label_w}}{ratios}  (worst {r.value:.2f}; "
                         f"real {real:#.3g} {r.protocol['units']})")
    return "\n".join(lines)


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
