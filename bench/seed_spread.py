"""The demo's level 1 trained with several seeds: how far one GAN run lands from another.

    python bench/seed_spread.py --seeds 10-17 --out seed_spread --label main

Why: one demo run is one draw. A change that alters training (noise, precision, kernels,
layouts) is only better or worse if it moves the mean by more than the seed-to-seed
spread. Each seed trains the demo's level 1 (tiny preset, its 600 steps, the defaults) on
the demo's synthetic training set, then scores the bilinear row (level 1 upsampled to the
top level, sampling seed 0) with FVD-synth-16f and class accuracy, as `cvg demo` does.
To compare two versions, run it from each checkout with the same --out: rows append to
OUT/results.jsonl with their --label, and the table at the end groups by label.
CPU only; about 4.5 min per seed on 2 cores, plus ~2.5 min once for the evaluator.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path


def parse_seeds(text: str) -> list[int]:
    """"10-13" -> [10, 11, 12, 13]; "1,4,7" -> [1, 4, 7]."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds += list(range(int(lo), int(hi or lo) + 1))
    return seeds


def summary(rows: list[dict]) -> list[str]:
    """One line per label: mean +- sd (n) of each metric, and the seeds."""
    lines = []
    for label in dict.fromkeys(r["label"] for r in rows):
        mine = [r for r in rows if r["label"] == label]
        parts = []
        for key, scale, unit in (("fvdsynth_16f", 1, ""), ("accsynth", 100, "%")):
            vals = [r[key] * scale for r in mine]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            parts.append(f"{key} {statistics.mean(vals):.1f}{unit} +- {sd:.1f}")
        seeds = ",".join(str(r["seed"]) for r in mine)
        lines.append(f"{label:12s} n={len(mine)}  " + "  ".join(parts) + f"  (seeds {seeds})")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="10-14", help="training seeds: 10-14 or 1,4,7")
    p.add_argument("--out", default="seed_spread", help="runs, data and results.jsonl")
    p.add_argument("--label", default="this", help="names this code version in the table")
    p.add_argument("--steps", type=int, default=None, help="level 1 steps (default: preset's)")
    p.add_argument("--num-videos", type=int, default=256, help="clips scored per seed")
    p.add_argument("--data", default=None,
                   help="the demo's training set to reuse (e.g. cvg_demo/data, with its cached "
                        "evaluator); default: made under OUT/data, the evaluator trained once")
    a = p.parse_args()

    from cvg_fast.config import get_preset
    from cvg_fast.data.synthetic import demo_data_spec, ensure_synthetic_set
    from cvg_fast.metrics import parse_metric
    from cvg_fast.metrics.sources import bilinear_source
    from cvg_fast.metrics.suite import MetricSuite
    from cvg_fast.sampling import load_cascade
    from cvg_fast.training import train_level

    out = Path(a.out)
    cfg = get_preset("tiny")
    data = Path(a.data) if a.data else out / "data"
    if not a.data:
        ensure_synthetic_set(data, 0, demo_data_spec(cfg, a.num_videos), "the training set")
    top = cfg.levels[-1]
    specs = [parse_metric(m, top.frames, a.num_videos) for m in ("fvdsynth_16f", "accsynth")]
    suite = MetricSuite(specs, data, size=top.size, stride=cfg.frame_stride, seed=0)
    results = out / "results.jsonl"
    for seed in parse_seeds(a.seeds):
        c = cfg.copy()
        c.train.seed = seed
        c.train.steps = a.steps or c.train.steps
        c.train.checkpoint_every = c.train.sample_every = max(c.train.steps // 2, 1)
        run = out / f"{a.label}_seed{seed}"
        shutil.rmtree(run, ignore_errors=True)
        t0 = time.time()
        train_level(c, 1, data, run, overwrite=True, device="cpu", progress=False)
        scores = suite.evaluate(bilinear_source(load_cascade(run, device="cpu"), 1, seed=0),
                                "bilinear")
        row = {"label": a.label, "seed": seed, "steps": c.train.steps,
               **{k: r.value for k, r in scores.items()}, "seconds": round(time.time() - t0)}
        print(json.dumps(row), flush=True)
        with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")
    rows = [json.loads(line) for line in open(results)]
    print(f"level 1 of the demo, bilinear row, {a.num_videos} clips ({results}):")
    for line in summary(rows):
        print("  " + line)


if __name__ == "__main__":
    main()
