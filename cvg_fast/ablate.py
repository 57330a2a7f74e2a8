"""`cvg ablate`: the paper's No-MD (Table III) and window-size (Table IV) ablations, small.

Level 1 of a preset (default `tiny`) is trained once on the demo's synthetic data;
level 2 is then trained once per variant (matching discriminator on or off, a
training window of w input frames), every variant with the same steps and seed,
on that same level 1. So a difference between two rows comes from the variant
alone. Each variant is scored the way `cvg demo` scores its cascade, next to the
`real` floor (held-out clips) and the `bilinear` baseline (level 1 upsampled).

    OUT/data, OUT/heldout           synthetic training set (seed 0), held-out set (seed 1)
    OUT/level1_run/level1/          the shared level 1
    OUT/variants/<name>/level1/     a byte copy of its checkpoint and config.json, so
                                    that the variant folder is a whole run for load_cascade
    OUT/variants/<name>/level2/     the variant's upscaler
    OUT/ablate.json, OUT/ablate.md  every number and setting; the table in markdown
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from cvg_fast.config import CascadeConfig, get_preset
from cvg_fast.data.synthetic import demo_data_spec, ensure_synthetic_set
from cvg_fast.errors import CvgError

__all__ = ["ABLATE_METRICS", "AblationResult", "Variant", "parse_windows", "plan_variants",
           "run_ablation"]

ABLATE_METRICS = ("fvdsynth_16f", "fvdsynth_64f", "accsynth", "issynth")
DATA_SEEDS = {"train": 0, "heldout": 1}  # the synthetic sets' seeds, as in `cvg demo`
OVERLAP = 0.5  # upscaler windows overlap as in the demo: seams do not decide the table
FORMAT = "cvg_fast.ablate/1"


# ------------------------------------------------------------------------------ variants
@dataclass(frozen=True)
class Variant:
    """One level-2 training setup: matching discriminator on/off, window in input frames."""

    name: str  # md_w4, nomd_w4, md_w8, ...
    matching: bool
    window: int


def parse_windows(text: str) -> tuple[int, ...]:
    """'2,8' -> (2, 8); '' -> (); anything not a whole number is a one-line CvgError."""
    out = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            out.append(int(part))
        except ValueError:
            raise CvgError(f"--windows {text!r}: {part!r} is not a whole number of frames "
                           f"(e.g. --windows 2,8)") from None
    return tuple(out)


def plan_variants(cfg: CascadeConfig, names: list[str] | None = None,
                  windows: tuple[int, ...] = (8,)) -> list[Variant]:
    """The variants to train, in table order.

    Always offered: md_w{ref} (the reference: the preset's level-2 window) and nomd_w{ref}
    (the paper's "No MD"); plus md_w{N} for each N in `windows` (1..level-1 frames).
    `names` picks a subset (default: all offered).
    """
    if cfg.num_levels < 2:
        raise CvgError(f"preset {cfg.name!r} has one level: the ablations need an upscaler")
    frames1, ref = cfg.levels[0].frames, cfg.window(2)
    for w in windows:
        if not 1 <= w <= frames1:
            raise CvgError(f"--windows: {w} input frames is outside 1..{frames1} (level 1 "
                           f"makes {frames1} frames)")
    offered = [Variant(f"md_w{ref}", True, ref), Variant(f"nomd_w{ref}", False, ref)]
    offered += [Variant(f"md_w{w}", True, w) for w in sorted(set(windows)) if w != ref]
    if names is None:
        return offered
    by_name = {v.name: v for v in offered}
    if not names:
        raise CvgError(f"--variants is empty: choose from {', '.join(by_name)}")
    picked = []
    for n in names:
        if n not in by_name:
            raise CvgError(f"unknown variant {n!r}: choose from {', '.join(by_name)} "
                           f"(--windows N adds md_wN)")
        if by_name[n] not in picked:
            picked.append(by_name[n])
    return picked


# -------------------------------------------------------------------------------- result
@dataclass
class AblationResult:
    """rows: {label: {metric: value, "matching_error": .., "train_seconds": ..}}, real and
    bilinear first; settings: everything needed to rerun it (also in ablate.json)."""

    rows: dict[str, dict]
    settings: dict
    describe: list[str] = field(default_factory=list)  # the metric suite's protocol lines
    json_path: Path | None = None
    md_path: Path | None = None
    seconds: float = 0.0

    def table(self, markdown: bool = False) -> str:
        """One row per source; columns: variant setup, metrics, matching error, train time."""
        heads = ["row", "window", "MD", *ABLATE_METRICS, "matching_error", "train_s"]
        body = []
        for label, row in self.rows.items():
            var = self.settings["variants"].get(label)
            cells = [label, str(var["window"]) if var else "-",
                     ("on" if var["matching"] else "off") if var else "-"]
            for m in ABLATE_METRICS:
                cells.append(_fmt(m, row.get(m), row.get(f"{m}_std")))
            cells.append(_fmt("matching_error", row.get("matching_error")))
            ts = row.get("train_seconds")
            cells.append("-" if ts is None else f"{ts:.0f}")
            body.append(cells)
        if markdown:
            lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
            return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in body])
        widths = [max(len(r[i]) for r in [heads] + body) + 2 for i in range(len(heads))]

        def line(r: list[str]) -> str:  # label left-aligned, numbers right-aligned
            return r[0].ljust(widths[0]) + "".join(c.rjust(w) for c, w in zip(r[1:], widths[1:]))

        head = line(heads)
        return "\n".join([head, "-" * len(head)] + [line(r) for r in body])

    def report(self) -> str:
        """What `cvg ablate` prints after the progress lines."""
        s = self.settings
        lines = [self.table(),
                 "real = held-out real clips (the floor); bilinear = level 1 upsampled in place "
                 "of level 2 (an upscaler that learned nothing); MD = matching discriminator; "
                 "window = level-2 training window in input frames",
                 f"clips: {s['num_eval_videos']} generated per row vs {s['num_eval_videos']} real "
                 f"training clips (FVD); metrics at {s['frames']} and {s['long_frames']} frames; "
                 f"matching error on {s['matching_videos']} videos of {s['long_frames']} frames",
                 f"seeds: data {s['data_seeds']['train']} (training set) / "
                 f"{s['data_seeds']['heldout']} (held-out), training {s['train_seed']}, "
                 f"sampling {s['sample_seed']}; overlap {s['overlap']}",
                 f"steps: level 1 {s['steps_level1']}, level 2 {s['steps']} per variant; "
                 f"windows: " + ", ".join(f"{n} {v['window']}" for n, v in s["variants"].items()),
                 *self.describe,
                 f"results: {self.json_path}, {self.md_path}",
                 f"done in {self.seconds:.0f}s"]
        return "\n".join(lines)


def _fmt(name: str, value: float | None, std: float | None = None) -> str:
    if value is None:
        return "-"
    if name.startswith("acc"):
        return f"{100 * value:.1f}%"
    if name == "matching_error":
        return f"{value:.4f}"
    if std is not None:
        return f"{value:.2f}±{std:.2f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"


def _finite_or_none(x: float) -> float | None:
    """JSON has no NaN: a non-finite number is written as null (and shows as '-')."""
    return float(x) if math.isfinite(x) else None


def _numbers(results: dict) -> dict:
    """{name: MetricResult} -> {name: value, name_std: std (IS)}."""
    row = {}
    for name, r in results.items():
        row[name] = _finite_or_none(r.value)
        if r.std is not None:
            row[f"{name}_std"] = _finite_or_none(r.std)
    return row


def _write_text(path: Path, text: str) -> None:
    from cvg_fast.models.checkpoint import atomic_write_bytes

    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def _fresh(path: Path) -> Path:
    """Remove a run folder this module wrote before (stale logs and samples would mix in)."""
    if path.exists():
        shutil.rmtree(path)
    return path


# ---------------------------------------------------------------------------------- run
def run_ablation(out: str | os.PathLike = "cvg_ablate", steps: int | None = None,
                 steps_level1: int | None = None, num_eval_videos: int = 256, seed: int = 0,
                 variants: list[str] | None = None, windows: tuple[int, ...] = (8,),
                 progress: bool = True, cfg: CascadeConfig | None = None,
                 evaluator_budget: str = "full", matching_videos: int = 32) -> AblationResult:
    """Train level 1 once, level 2 once per variant, score them all; write OUT/ablate.json.

    steps: level-2 steps of every variant (default: the demo's, 2/5 of the preset's);
    steps_level1: default the preset's. seed: sampling seed (videos and real clips).
    cfg: the cascade to ablate (default the `tiny` preset; tests pass narrower ones).
    evaluator_budget: the synthetic-set evaluator's training budget ("tiny" for tests only).
    matching_videos: videos of 4x the training length the matching error is read on.
    """
    from cvg_fast.metrics import parse_metric
    from cvg_fast.metrics.sources import bilinear_source, cascade_source, folder_source
    from cvg_fast.metrics.suite import MetricSuite
    from cvg_fast.metrics.synth_evaluator import load_synth_evaluator
    from cvg_fast.models.checkpoint import checkpoint_path, level_dir
    from cvg_fast.sampling import generate, load_cascade
    from cvg_fast.training import train_level

    cfg = (cfg or get_preset("tiny")).copy()
    if num_eval_videos < 8 or num_eval_videos % 4:
        raise CvgError(f"--num-eval-videos must be a multiple of 4 and >= 8 "
                       f"(got {num_eval_videos})")
    steps1 = cfg.train.steps if steps_level1 is None else steps_level1
    steps2 = max(cfg.train.steps * 2 // 5, 1) if steps is None else steps
    for flag, n in (("--steps", steps2), ("--steps-level1", steps1),
                    ("matching_videos", matching_videos)):
        if n < 1:
            raise CvgError(f"{flag} must be >= 1 (got {n})")
    plan = plan_variants(cfg, variants, tuple(windows))
    t0 = time.time()
    out = Path(out)
    top = cfg.levels[-1]
    long_frames = top.frames * 4
    phases = 4 + len(plan)
    data, heldout = out / "data", out / "heldout"
    level1_run, var_root = out / "level1_run", out / "variants"
    print(f"cvg ablate: {', '.join(v.name for v in plan)} on preset {cfg.name!r}; everything "
          f"goes to {out.resolve()}", flush=True)

    print(f"[1/{phases}] synthetic data: training set (seed {DATA_SEEDS['train']}) and held-out "
          f"set (seed {DATA_SEEDS['heldout']}), {num_eval_videos} videos of {long_frames} frames",
          flush=True)
    spec = demo_data_spec(cfg, num_eval_videos)
    ensure_synthetic_set(data, DATA_SEEDS["train"], spec, "the training set",
                         "this ablation", progress)
    ensure_synthetic_set(heldout, DATA_SEEDS["heldout"], spec, "the held-out set",
                         "this ablation", progress)

    print(f"[2/{phases}] the synthetic-set evaluator", flush=True)
    evaluator = load_synth_evaluator(data, progress=progress, budget=evaluator_budget)

    def set_steps(c: CascadeConfig, n: int) -> CascadeConfig:
        c.train.steps = n
        c.train.checkpoint_every = c.train.sample_every = max(n // 2, 1)
        return c

    lv1 = cfg.levels[0]
    print(f"[3/{phases}] level 1, trained once for every variant: {lv1.frames} frames at "
          f"{lv1.size}px, {steps1} steps", flush=True)
    t = time.time()
    train_level(set_steps(cfg.copy(), steps1), 1, data, _fresh(level1_run), overwrite=True,
                device="cpu", progress=progress)
    level1_seconds = time.time() - t

    train_seconds: dict[str, float] = {}
    for k, v in enumerate(plan, start=4):
        print(f"[{k}/{phases}] level 2, variant {v.name}: matching discriminator "
              f"{'on' if v.matching else 'off'}, window {v.window} input frames, {steps2} steps",
              flush=True)
        run = _fresh(var_root / v.name)
        level_dir(run, 1).mkdir(parents=True)
        for f in (checkpoint_path(level1_run, 1), level_dir(level1_run, 1) / "config.json"):
            shutil.copy2(f, level_dir(run, 1) / f.name)
        c = set_steps(cfg.copy(), steps2)
        c.levels[1].matching, c.levels[1].window = v.matching, v.window
        t = time.time()
        train_level(c, 2, data, run, overwrite=True, device="cpu", progress=progress)
        train_seconds[v.name] = time.time() - t

    n = num_eval_videos
    print(f"[{phases}/{phases}] metrics on {n} videos per row ({len(plan) + 2} rows) against "
          f"{n} training clips; matching error on {matching_videos} videos", flush=True)
    specs = [parse_metric(m, top.frames, n) for m in ABLATE_METRICS]
    suite = MetricSuite(specs, data, size=top.size, stride=cfg.frame_stride, seed=seed,
                        progress=progress, detectors={"synth": evaluator})
    cascades = {v.name: load_cascade(var_root / v.name, device="cpu") for v in plan}
    scored = {
        "real": _numbers(suite.evaluate(folder_source(heldout, top.size, cfg.frame_stride, seed),
                                        "real")),
        # level 1 is shared: any variant's cascade gives the same bilinear row
        "bilinear": _numbers(suite.evaluate(bilinear_source(cascades[plan[0].name], 1,
                                                            seed=seed), "bilinear")),
    }
    for v in plan:
        cascade = cascades[v.name]
        row = _numbers(suite.evaluate(cascade_source(cascade, seed=seed, overlap=OVERLAP),
                                      v.name))
        _, stats = generate(cascade, num_videos=matching_videos, frames=long_frames, seed=seed,
                            overlap=OVERLAP, device="cpu", return_stats=True, progress=False)
        row["matching_error"] = _finite_or_none(stats.matching_error[2])
        scored[v.name] = row | {"train_seconds": train_seconds[v.name]}

    settings = {
        "format": FORMAT, "preset": cfg.name, "num_eval_videos": n,
        "frames": top.frames, "long_frames": long_frames, "size": top.size,
        "data_seeds": dict(DATA_SEEDS), "train_seed": cfg.train.seed, "sample_seed": seed,
        "overlap": OVERLAP, "matching_videos": matching_videos,
        "steps_level1": steps1, "steps": steps2, "windows": sorted(set(windows)),
        "evaluator_budget": evaluator_budget, "metrics": list(ABLATE_METRICS),
        "variants": {v.name: {"window": v.window, "matching": v.matching, "steps": steps2,
                              "train_seed": cfg.train.seed, "run": str(var_root / v.name)}
                     for v in plan},
        "level1": {"run": str(level1_run), "steps": steps1, "train_seconds": level1_seconds},
        "data": str(data), "heldout": str(heldout),
    }
    result = AblationResult(scored, settings, suite.describe(), out / "ablate.json",
                            out / "ablate.md")
    result.seconds = time.time() - t0
    _write_text(result.json_path, json.dumps(
        {"settings": settings, "rows": scored, "describe": result.describe,
         "seconds": result.seconds, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2))
    _write_text(result.md_path, result.table(markdown=True) + "\n")
    return result
