"""`cvg bench quality`: the demo's cascade trained over several seeds, scored with its spread.

    cvg bench quality --seeds 0-2 --label main
    cvg bench quality --seeds 0-2 --label tbptt24 --set train.tbptt_horizon=24
    cvg bench quality --summarize bench/results/quality      # both labels, side by side

Why: one GAN run is one draw (seed to seed here: about +-12 FVD-synth, +-13% accuracy),
so a change is only better if it moves the mean over seeds by more than that. Each seed
trains level 1 and level 2 of the `tiny` preset (with `--set` overrides) on the demo's
synthetic data, then two rows are scored, as `cvg demo` scores them:

    level1    level 1 brought up to the top level by the base path (the demo's bilinear row)
    cascade   both levels (upscaler windows overlapping by half, as the demo samples)

and, once per study with no training, three ceilings from held-out real clips:

    real                     the clips themselves (the floor)
    l1-perfect+base          the clips pushed down the data pyramid to level 1 (f_t then
                             f_s), then up by the upscaler's base path: a perfect level 1
                             under an upscaler that learned nothing
    l1-perfect+best-detail   the same plus each frame's own spatial high-pass, x - up(f_s(x)):
                             the best a detail-only upscaler can do on a perfect level 1

Columns: FVD-synth at T and 4T frames, class accuracy, and motion ratios to real clips
(speed: the evaluator's velocity head; flicker: mean |frame t+1 - frame t|) at T, 4T and
16T frames (T = the top level's training length, 16). A motion cell is the worst 16-frame
window's ratio; every window's ratio is printed below the table and kept in the JSON
(bench/results/quality/quality_<label>_<time>.json). Ceilings are scored only at the
lengths the real clips have ('-' elsewhere).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
import typing
from pathlib import Path

import numpy as np
import torch

from cvg_fast.config import CascadeConfig, LevelConfig, TrainConfig, get_preset
from cvg_fast.errors import CvgError

__all__ = ["CEILINGS", "apply_overrides", "ceiling_source", "format_rows", "parse_seeds",
           "run_study", "study_metrics", "summarize"]

FORMAT = "cvg_fast.bench_quality/1"
PRESET = "tiny"
OVERLAP = 0.5  # upscaler windows overlap as in the demo
SAMPLE_SEED = 0  # noise of the scored videos and choice of real clips: fixed across seeds
DATA_SEEDS = {"train": 0, "heldout": 1}  # the synthetic sets' seeds, as in `cvg demo`
CEILINGS = ("real", "l1-perfect+base", "l1-perfect+best-detail")
ROWS = ("level1", "cascade")
# set by the study itself: --seeds, --steps-l1/--steps-l2 (checkpoints as the demo's)
_OWNED = {"train.seed": "--seeds", "train.steps": "--steps-l1/--steps-l2",
          "train.checkpoint_every": "--steps-l1/--steps-l2",
          "train.sample_every": "--steps-l1/--steps-l2"}


# --------------------------------------------------------------------------- parsing
def parse_seeds(text: str) -> list[int]:
    """"0-2" -> [0, 1, 2]; "1,4,7" -> [1, 4, 7]; duplicates dropped, order kept."""
    seeds: list[int] = []
    try:
        for part in text.replace(" ", "").split(","):
            lo, _, hi = part.partition("-")
            seeds += range(int(lo), int(hi or lo) + 1)
    except ValueError:
        raise CvgError(f"--seeds {text!r}: use a range or a list, e.g. 0-2 or 1,4,7") from None
    if not seeds:
        raise CvgError(f"--seeds {text!r} names no seed (e.g. 0-2, or 5-5 for one)")
    return list(dict.fromkeys(seeds))


def _scalar_fields(cls) -> dict[str, tuple[type, bool]]:
    """{field: (bool | int | float | str, None allowed)} of a config dataclass."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        args = typing.get_args(hint) if union else (hint,)
        kinds = [a for a in args if a is not type(None)]
        if len(kinds) == 1 and kinds[0] in (bool, int, float, str):
            out[name] = (kinds[0], len(kinds) < len(args))
    return out


def _valid_keys(cfg: CascadeConfig) -> str:
    top = ", ".join(_scalar_fields(CascadeConfig))
    train = ",".join(k for k in _scalar_fields(TrainConfig) if f"train.{k}" not in _OWNED)
    level = ",".join(_scalar_fields(LevelConfig))
    return (f"{top}, train.{{{train}}}, levels.N.{{{level}}} with N the level "
            f"(1..{cfg.num_levels})")


def _parse_value(key: str, text: str, kind: type, nullable: bool):
    low = text.strip().lower()
    if nullable and low in ("none", "null"):
        return None
    if kind is str:
        return text
    if kind is bool:
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
    else:
        try:
            return kind(low)
        except ValueError:
            pass
    what = {bool: "true or false", int: "a whole number", float: "a number"}[kind]
    raise CvgError(f"--set {key}={text}: {key} takes {what}{' or none' if nullable else ''}")


def apply_overrides(cfg: CascadeConfig, items: list[str]) -> tuple[CascadeConfig, dict]:
    """KEY=VALUE strings -> (a validated copy of cfg, {key: parsed value}).

    Keys: a CascadeConfig field (z_t_dim), train.<field>, levels.<level>.<field> with
    the level numbered from 1 as everywhere (levels.2.g_ch is the upscaler's width).
    Values take the field's type (bool: true/false; none where the field allows it).
    """
    cfg = cfg.copy()
    done: dict = {}
    for item in items:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise CvgError(f"--set {item!r}: use KEY=VALUE, e.g. --set train.tbptt_horizon=24")
        if key in _OWNED:
            raise CvgError(f"--set {key}: the study sets it; use {_OWNED[key]}")
        parts = key.split(".")
        target = None
        if len(parts) == 1:
            target = cfg
        elif len(parts) == 2 and parts[0] == "train":
            target = cfg.train
        elif (len(parts) == 3 and parts[0] == "levels" and parts[1].isdigit()
              and 1 <= int(parts[1]) <= cfg.num_levels):
            target = cfg.levels[int(parts[1]) - 1]
        fields = _scalar_fields(type(target)) if target is not None else {}
        if parts[-1] not in fields:
            raise CvgError(f"--set {key}: unknown key; valid: {_valid_keys(cfg)}")
        value = _parse_value(key, text, *fields[parts[-1]])
        setattr(target, parts[-1], value)
        done[key] = value
    return cfg.validate(), done


def study_metrics(frames: int) -> list[str]:
    """The study's metric names for training length T = `frames`: FVD-synth at T and 4T,
    accuracy, speed and flicker at T, 4T and 16T (16 -> fvdsynth_16f, ..., flickersynth_256f)."""
    return [f"fvdsynth_{frames}f", f"fvdsynth_{4 * frames}f", "accsynth"] + [
        f"{kind}synth_{n * frames}f" for kind in ("speed", "flicker") for n in (1, 4, 16)]


# --------------------------------------------------------------------- ceiling sources
def _frames(arr: np.ndarray) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> float32 (B, T, 3, H, W) in 0..255."""
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 1, 4, 2, 3).float()


def _uint8(x: torch.Tensor) -> np.ndarray:
    """float (B, T, 3, H, W) in 0..255 -> uint8 (B, T, H, W, 3)."""
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 1, 3, 4, 2).contiguous().numpy()


def level1_view(x: torch.Tensor, cfg: CascadeConfig) -> torch.Tensor:
    """Top-level clips (B, T, 3, S, S) -> their level-1 view (B, T / F, 3, s, s): f_t then f_s
    down the data pyramid (F = top frames / level-1 frames, s = level 1's size)."""
    from cvg_fast.ops import downsample_to

    f = cfg.levels[-1].frames // cfg.levels[0].frames
    return downsample_to(x, x.shape[1] // f, cfg.levels[0].size)


def base_path(low: torch.Tensor, frames: int, size: int) -> torch.Tensor:
    """(B, t, 3, s, s) -> (B, frames, 3, size, size): input frame i at output frame (frames/t)*i,
    linear between, the last held, bilinear in space (`UpscalerGenerator.base`, whole clip)."""
    from cvg_fast.ops import upsample_to

    return upsample_to(low, frames, size)


def spatial_highpass(x: torch.Tensor, low_size: int) -> torch.Tensor:
    """(B, T, 3, S, S) -> x - up(f_s^m(x)) per frame, f_s^m down to `low_size`: what the
    spatial pyramid removes (the part a detail-only upscaler may add)."""
    from cvg_fast.ops import spatial_down_levels, upsample_to

    m = (x.shape[-1] // low_size).bit_length() - 1
    return x - upsample_to(spatial_down_levels(x, m), x.shape[1], x.shape[-1])


def ceiling_source(real, cfg: CascadeConfig, detail: bool):
    """A VideoSource: `real`'s clips through level 1 and back up by the base path, plus (with
    `detail`) each frame's own high-pass. Same shape, frames and labels as `real`."""

    def source(count: int, frames: int):
        for arr, labels in real(count, frames):
            x = _frames(arr)
            y = base_path(level1_view(x, cfg), x.shape[1], x.shape[-1])
            if detail:
                y = y + spatial_highpass(x, cfg.levels[0].size)
            yield _uint8(y), labels

    return source


# ----------------------------------------------------------------------------- scoring
def _finite(x) -> float | None:
    """JSON has no NaN: a non-finite number is written as null (and shows as '-')."""
    x = float(x)
    return x if math.isfinite(x) else None


def _numbers(results: dict) -> dict:
    """{name: MetricResult} -> {name: {"value", ["std"], ["ratios", "fake_per_window",
    "real_per_window"]}} (the lists: motion metrics, one number per 16-frame window)."""
    out = {}
    for name, r in results.items():
        d = {"value": _finite(r.value)}
        if r.std is not None:
            d["std"] = _finite(r.std)
        for k in ("ratios", "fake_per_window", "real_per_window"):
            if k in r.protocol:
                d[k] = [_finite(v) for v in np.asarray(r.protocol[k], dtype=float).ravel()]
        out[name] = d
    return out


def _suite(names: list[str], cfg: CascadeConfig, data: Path, count: int, evaluator):
    from cvg_fast.metrics import parse_metric
    from cvg_fast.metrics.suite import MetricSuite

    top = cfg.levels[-1]
    specs = [parse_metric(m, top.frames, count) for m in names]
    return MetricSuite(specs, data, size=top.size, stride=cfg.frame_stride, seed=SAMPLE_SEED,
                       progress=False, detectors={"synth": evaluator})


def _say(msg: str) -> None:
    print(msg, flush=True)


def score_ceilings(cfg: CascadeConfig, data: Path, heldout: Path, names: list[str],
                   count: int, evaluator) -> dict:
    """{ceiling row: numbers} for the metrics of `names` no longer than the held-out clips."""
    from cvg_fast.data.synthetic import read_synthetic_spec
    from cvg_fast.metrics import parse_metric
    from cvg_fast.metrics.sources import folder_source

    top = cfg.levels[-1]
    longest = (read_synthetic_spec(heldout)["frames"] - 1) // cfg.frame_stride + 1
    short = [m for m in names if parse_metric(m, top.frames, count).frames <= longest]
    suite = _suite(short, cfg, data, count, evaluator)
    real = folder_source(heldout, top.size, cfg.frame_stride, SAMPLE_SEED)
    sources = {"real": real, "l1-perfect+base": ceiling_source(real, cfg, detail=False),
               "l1-perfect+best-detail": ceiling_source(real, cfg, detail=True)}
    rows = {}
    for label, src in sources.items():
        t = time.time()
        rows[label] = _numbers(suite.evaluate(src, label))
        _say(f"  ceiling {label}: scored in {time.time() - t:.0f}s")
    return rows


def run_seed(job: dict) -> dict:
    """Train levels 1..job["levels"] with one seed, score its rows; the seed's JSON record.

    Runs in this process or a worker (job is plain JSON: the config as a dict).
    """
    from cvg_fast.metrics.sources import bilinear_source, cascade_source
    from cvg_fast.metrics.synth_evaluator import load_synth_evaluator
    from cvg_fast.sampling import load_cascade
    from cvg_fast.training import train_level

    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    t0 = time.time()
    seed, data, run = job["seed"], Path(job["data"]), Path(job["run"])
    cfg = CascadeConfig.from_dict(job["config"])
    cfg.train.seed = seed
    if run.exists():  # stale logs and samples of an earlier study would mix in
        shutil.rmtree(run)
    seconds = {}
    for level in range(1, job["levels"] + 1):
        steps = job["steps"][str(level)]
        c = cfg.copy()
        c.train.steps = steps
        c.train.checkpoint_every = c.train.sample_every = max(steps // 2, 1)
        _say(f"[seed {seed}] training level {level}: {steps} steps")
        t = time.time()
        train_level(c, level, data, run, overwrite=True, device="cpu", progress=False,
                    tensorboard=False)
        seconds[f"train_level{level}"] = round(time.time() - t, 1)
    t = time.time()
    cascade = load_cascade(run, device="cpu")
    evaluator = load_synth_evaluator(data, progress=False, budget=job["evaluator_budget"])
    suite = _suite(job["metrics"], cfg, data, job["count"], evaluator)
    prec = dict(amp=cfg.train.amp, channels_last=cfg.train.channels_last)
    sources = {"level1": bilinear_source(cascade, 1, seed=SAMPLE_SEED, **prec)}
    if job["levels"] == cfg.num_levels:
        sources["cascade"] = cascade_source(cascade, seed=SAMPLE_SEED, overlap=OVERLAP, **prec)
    _say(f"[seed {seed}] scoring {', '.join(sources)}: {job['count']} videos each")
    rows = {label: _numbers(suite.evaluate(src, label)) for label, src in sources.items()}
    seconds["score"] = round(time.time() - t, 1)
    seconds["wall"] = round(time.time() - t0, 1)
    _say(f"[seed {seed}] done in {seconds['wall']:.0f}s")
    return {"seed": seed, "run": str(run), "seconds": seconds, "rows": rows}


# ------------------------------------------------------------------------------ tables
def _head(name: str) -> str:
    """fvdsynth_16f -> fvd16, speedsynth_256f -> speed256, accsynth -> acc."""
    m = re.fullmatch(r"([a-z]+?)synth(?:_(\d+)f)?", name)
    return (m.group(1) + (m.group(2) or "")) if m else name


def _cell(name: str, vals: list[float | None]) -> str:
    """One value, or mean±sd of several: accuracy in %, FVD to 0.1 (0.01 below 10), ratios
    to 0.01."""
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    scale, digits, unit = (100, 1, "%") if name.startswith("acc") else (1, 2, "")
    mean = statistics.mean(vals) * scale
    if name.startswith("fvd") and abs(mean) >= 10:
        digits = 1
    if len(vals) == 1:
        return f"{mean:.{digits}f}{unit}"
    sd = statistics.stdev(vals) * scale
    return f"{mean:.{digits}f}±{sd:.{digits}f}{unit}"


def format_rows(rows: list[tuple[str, dict[str, list]]], names: list[str]) -> str:
    """rows: [(label, {metric: [value per seed]})] -> an aligned text table."""
    body = [[label] + [_cell(n, vals.get(n, [])) for n in names] for label, vals in rows]
    head = ["row"] + [_head(n) for n in names]
    widths = [max(len(r[i]) for r in [head] + body) + 2 for i in range(len(head))]

    def line(r):
        return r[0].ljust(widths[0]) + "".join(c.rjust(w) for c, w in zip(r[1:], widths[1:]))

    return "\n".join([line(head), "-" * sum(widths)] + [line(r) for r in body])


def _values(per_row: list[dict], name: str) -> list:
    return [r[name]["value"] for r in per_row if name in r]


def _summary(runs: list[dict]) -> dict:
    """{row: {metric: {"mean", "sd", "n"}}} over the seeds' runs."""
    out = {}
    for row in ROWS:
        per = [r["rows"][row] for r in runs if row in r["rows"]]
        if not per:
            continue
        out[row] = {}
        for name in per[0]:
            vals = [v for v in _values(per, name) if v is not None]
            out[row][name] = {"mean": statistics.mean(vals) if vals else None,
                              "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                              "n": len(vals)}
    return out


def _window_lines(label: str, numbers: dict, names: list[str], frames: int) -> list[str]:
    """'label  speed 64f 0.98 0.97 .. | 256f ..  flicker ..': every window of 4T and 16T."""
    parts = []
    for kind in ("speed", "flicker"):
        cells = []
        for n in (4, 16):
            name = f"{kind}synth_{n * frames}f"
            ratios = numbers.get(name, {}).get("ratios")
            if name in names and ratios:
                cells.append(f"{n * frames}f " + " ".join(
                    "-" if r is None else f"{r:.2f}" for r in ratios))
        if cells:
            parts.append(f"{kind} " + " | ".join(cells))
    return [f"{label:<24}" + "   ".join(parts)] if parts else []


def report(record: dict) -> str:
    """The study's table: ceilings, each seed's rows, mean ± sd; then per-window ratios."""
    names, frames = record["metrics"], record["frames"]
    rows: list[tuple[str, dict]] = []
    for label, numbers in (record.get("ceilings") or {}).items():
        rows.append((label, {n: [numbers[n]["value"]] for n in numbers}))
    runs = record["runs"]
    windows = []
    for row in ROWS:
        per = [(r["seed"], r["rows"][row]) for r in runs if row in r["rows"]]
        for seed, numbers in per:
            rows.append((f"{row} seed {seed}", {n: [numbers[n]["value"]] for n in numbers}))
            windows += _window_lines(f"{row} seed {seed}", numbers, names, frames)
        if len(per) > 1:
            rows.append((f"{row} mean±sd (n={len(per)})",
                         {n: _values([p for _, p in per], n) for n in names}))
    for label, numbers in (record.get("ceilings") or {}).items():
        windows += _window_lines(label, numbers, names, frames)
    s = record
    lines = [f"quality study {s['label']!r}: preset {s['preset']}, seeds "
             f"{','.join(map(str, s['seeds']))}, steps: {_settings(s)}",
             format_rows(rows, names), _LEGEND]
    if windows:
        lines += [f"every 16-frame window's ratio to real, at {4 * frames} and {16 * frames} "
                  f"frames:"] + windows
    return "\n".join(lines)


def _settings(record: dict) -> str:
    """'level 1 600, level 2 240; 256 videos per row; overrides: none'."""
    steps = ", ".join(f"level {k} {v}" for k, v in record["steps"].items())
    over = ", ".join(f"{k}={v}" for k, v in record["overrides"].items()) or "none"
    return f"{steps}; {record['num_eval_videos']} videos per row; overrides: {over}"


_LEGEND = ("fvdN = FVD-synth on N-frame clips; acc = class accuracy; speedN / flickerN = "
           "the worst 16-frame window's speed / flicker ratio to real clips over N frames "
           "(1 = real); '-' = not scored (ceilings: longer than the real clips)")


def summarize(folder: str | os.PathLike) -> str:
    """Every quality_*.json in `folder` grouped by label: mean ± sd over all their seeds."""
    folder = Path(folder)
    files = sorted(folder.glob("quality_*.json"))
    records = []
    for f in files:
        try:
            rec = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(rec, dict) and rec.get("format") == FORMAT:
            records.append(rec)
    if not records:
        raise CvgError(f"no quality study results (quality_*.json) in {folder}: run "
                       f"`cvg bench quality --out {folder}` first")
    records.sort(key=lambda r: r["date"])
    names = list(dict.fromkeys(n for r in records for n in r["metrics"]))
    rows: list[tuple[str, dict]] = []
    notes = []
    ceilings = next((r["ceilings"] for r in reversed(records) if r.get("ceilings")), None)
    for label, numbers in (ceilings or {}).items():
        rows.append((label, {n: [numbers[n]["value"]] for n in numbers}))
    for label in dict.fromkeys(r["label"] for r in records):
        mine = [r for r in records if r["label"] == label]
        settings = {json.dumps([r["steps"], r["overrides"], r["num_eval_videos"]])
                    for r in mine}
        if len(settings) > 1:
            notes.append(f"note: label {label!r} pools runs with different steps, overrides "
                         f"or video counts")
        runs = [run for r in mine for run in r["runs"]]
        for row in ROWS:
            per = [run["rows"][row] for run in runs if row in run["rows"]]
            if per:
                rows.append((f"{label} {row} (n={len(per)})",
                             {n: _values(per, n) for n in names}))
        seeds = ",".join(str(run["seed"]) for run in runs)
        notes.append(f"{label}: {len(mine)} file(s), seeds {seeds}, steps: "
                     f"{_settings(mine[-1])}")
    return "\n".join([f"quality studies in {folder}: {len(records)} file(s), mean±sd over "
                      f"seeds", format_rows(rows, names), _LEGEND] + notes)


# -------------------------------------------------------------------------------- run
def _git() -> dict:
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if commit.returncode:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _ensure_sets(cfg: CascadeConfig, data: Path, heldout: Path, count: int) -> None:
    """The demo's synthetic sets: reused where they exist, else written (the held-out set
    with the training set's spec)."""
    from cvg_fast.data import write_synthetic_dataset
    from cvg_fast.data.synthetic import demo_data_spec, read_synthetic_spec

    for path, seed, what in ((data, DATA_SEEDS["train"], "training set"),
                             (heldout, DATA_SEEDS["heldout"], "held-out set")):
        if path.is_dir() and any(path.iterdir()):
            _say(f"  reusing the {what} in {path}")
            continue
        spec = demo_data_spec(cfg, count)
        if path == heldout:
            have = read_synthetic_spec(data)
            spec = {k: have[k] for k in ("num_classes", "videos_per_class", "frames", "size",
                                         "fps")}
        _say(f"  writing the {what} (seed {seed}) to {path}")
        write_synthetic_dataset(path, seed=seed, progress=False, **spec)


def run_study(seeds: list[int], label: str = "this", steps_l1: int = 600, steps_l2: int = 240,
              num_eval_videos: int = 256, out: str | os.PathLike = "bench/results/quality",
              jobs: int = 1, work: str | os.PathLike | None = None,
              overrides: list[str] = (), ceilings: bool = True, levels: int | None = None,
              data: str | os.PathLike = "cvg_demo/data",
              heldout: str | os.PathLike | None = None,
              evaluator_budget: str = "full") -> tuple[dict, Path]:
    """Train and score every seed, score the ceilings; write the JSON; (record, its path)."""
    from cvg_fast.bench_train import machine_info
    from cvg_fast.metrics.synth_evaluator import load_synth_evaluator

    t0 = time.time()
    cfg, done = apply_overrides(get_preset(PRESET), list(overrides))
    levels = cfg.num_levels if levels is None else levels
    if not 1 <= levels <= cfg.num_levels:
        raise CvgError(f"--levels {levels}: train 1 (level 1 only) or {cfg.num_levels} "
                       f"(the whole cascade)")
    if num_eval_videos < 8 or num_eval_videos % 4:
        raise CvgError(f"--num-eval-videos must be a multiple of 4 and >= 8 "
                       f"(got {num_eval_videos})")
    if steps_l1 < 1 or steps_l2 < 1:
        raise CvgError(f"--steps-l1 and --steps-l2 must be >= 1 (got {steps_l1}, {steps_l2})")
    if jobs < 1:
        raise CvgError(f"--jobs must be >= 1 (got {jobs})")
    data = Path(data)
    heldout = Path(heldout) if heldout is not None else data.parent / "heldout"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", label) or "study"
    if work is None:
        (data.parent / "quality_runs").mkdir(parents=True, exist_ok=True)
        work = tempfile.mkdtemp(prefix=f"{safe}_{stamp}_", dir=data.parent / "quality_runs")
    work = Path(work)
    frames = cfg.levels[-1].frames
    names = study_metrics(frames)
    steps = {"1": steps_l1, "2": steps_l2}
    steps = {k: v for k, v in steps.items() if int(k) <= levels}
    cores = _cores()
    jobs = min(jobs, len(seeds))
    threads = max(1, cores // jobs)
    _say(f"cvg bench quality {label!r}: seeds {','.join(map(str, seeds))}, levels 1..{levels}, "
         f"{jobs} job(s) x {threads} thread(s); runs go to {work.resolve()}")
    _say("[data] the demo's synthetic sets")
    _ensure_sets(cfg, data, heldout, num_eval_videos)
    _say("[evaluator] the synthetic-set evaluator (trained once, then cached)")
    evaluator = load_synth_evaluator(data, progress=False, budget=evaluator_budget)
    ceiling_rows = None
    if ceilings:
        _say("[ceilings] real, l1-perfect+base, l1-perfect+best-detail (no training)")
        ceiling_rows = score_ceilings(cfg, data, heldout, names, num_eval_videos, evaluator)
    base = {"config": cfg.to_dict(), "data": str(data.resolve()), "levels": levels,
            "steps": steps, "metrics": names, "count": num_eval_videos,
            "evaluator_budget": evaluator_budget, "threads": threads}
    todo = [base | {"seed": s, "run": str(work / f"seed{s}")} for s in seeds]
    _say(f"[train] {len(seeds)} seed(s): " + ", ".join(f"level {k} {v} steps"
                                                     for k, v in steps.items()))
    if jobs == 1:
        before = torch.get_num_threads()
        try:
            runs = [run_seed(j) for j in todo]
        finally:
            torch.set_num_threads(before)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            runs = list(pool.map(run_seed, todo))
    info = machine_info(torch.device("cpu"))
    record = {
        "format": FORMAT, "label": label, "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "git": _git(), "machine": {"cpu_model": info["cpu_model"], "cores": cores,
                                   "bf16_support": info["bf16_support"]},
        "torch": torch.__version__, "preset": PRESET, "overrides": done,
        "config": cfg.to_dict(), "seeds": seeds, "steps": steps, "levels": levels,
        "num_eval_videos": num_eval_videos, "frames": frames, "metrics": names,
        "sample_seed": SAMPLE_SEED, "overlap": OVERLAP, "data_seeds": dict(DATA_SEEDS),
        "evaluator_budget": evaluator_budget, "jobs": jobs, "threads_per_job": threads,
        "data": str(data.resolve()), "heldout": str(heldout.resolve()), "work": str(work),
        "ceilings": ceiling_rows, "runs": runs, "summary": _summary(runs),
        "wall_seconds": round(time.time() - t0, 1)}
    path = Path(out) / f"quality_{safe}_{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return record, path


# --------------------------------------------------------------------------------- CLI
def add_arguments(p) -> None:
    """The flags of `cvg bench quality` (an argparse parser)."""
    p.add_argument("--seeds", default="0-2", help="training seeds: 0-2 or 1,4,7 (default 0-2)")
    p.add_argument("--steps-l1", type=int, default=600, help="level-1 steps (default 600, "
                                                             "the demo's)")
    p.add_argument("--steps-l2", type=int, default=240, help="level-2 steps (default 240, "
                                                             "the demo's)")
    p.add_argument("--num-eval-videos", type=int, default=256,
                   help="videos per row (a multiple of 4, >= 8; default 256); also the size of "
                        "synthetic sets written here")
    p.add_argument("--label", default="this",
                   help="names this code/config variant; --summarize groups by it")
    p.add_argument("--out", default="bench/results/quality",
                   help="folder for quality_<label>_<time>.json (default bench/results/quality)")
    p.add_argument("--jobs", type=int, default=1,
                   help="seeds trained at once, in processes of cores // jobs threads (default 1)")
    p.add_argument("--work", default=None,
                   help="folder for the runs (default: a new folder under DATA/../quality_runs)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override the tiny preset before training, repeatable: "
                        "train.tbptt_horizon=24, z_t_dim=16, levels.1.g_ch=48 (level numbers "
                        "from 1)")
    p.add_argument("--no-ceilings", action="store_true",
                   help="skip the real / l1-perfect rows")
    p.add_argument("--levels", type=int, default=None,
                   help="1: train and score level 1 only (default: every level)")
    p.add_argument("--data", default="cvg_demo/data",
                   help="the demo's synthetic training set (default cvg_demo/data; written if "
                        "missing)")
    p.add_argument("--heldout", default=None,
                   help="held-out synthetic set for the ceilings (default DATA/../heldout)")
    p.add_argument("--evaluator-budget", default="full", choices=("full", "reduced", "tiny"),
                   help="the synthetic-set evaluator's training budget (tiny: smoke tests only)")
    p.add_argument("--summarize", nargs="?", const="", default=None, metavar="DIR",
                   help="print the grouped table of every JSON in DIR (default: --out) and stop")


def run_from_args(args) -> int:
    """`cvg bench quality`: run the study and print its table, or --summarize a folder."""
    if args.summarize is not None:
        print(summarize(args.summarize or args.out))
        return 0
    record, path = run_study(
        parse_seeds(args.seeds), label=args.label, steps_l1=args.steps_l1,
        steps_l2=args.steps_l2, num_eval_videos=args.num_eval_videos, out=args.out,
        jobs=args.jobs, work=args.work, overrides=args.overrides,
        ceilings=not args.no_ceilings, levels=args.levels, data=args.data,
        heldout=args.heldout, evaluator_budget=args.evaluator_budget)
    print(report(record))
    print(f"numbers: {path}")
    print(f"done in {record['wall_seconds']:.0f}s")
    return 0


def main(argv=None) -> int:
    import argparse

    from cvg_fast.errors import run_main

    def _main(argv):
        p = argparse.ArgumentParser(prog="bench/quality.py",
                                    description=__doc__.splitlines()[0])
        add_arguments(p)
        return run_from_args(p.parse_args(argv))

    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
