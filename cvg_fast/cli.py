"""The `cvg` command.

    cvg demo                         synthetic data -> tiny cascade -> long videos (CPU, minutes)
    cvg ablate                       No-MD and window-size ablations of level 2 (CPU, minutes)
    cvg generate RUN --frames F --out DIR
    cvg eval RUN --data DIR [--i3d PATH] [--metrics ...] [--num-videos N]
    cvg train --preset P --level L --data DIR --out RUN   (same as train/level.py)
    cvg memory [--preset P] [--frames 12,24,...]   training-step memory vs length (Fig. 3)
    cvg data synth DIR               the built-in synthetic dataset (real .mp4 files)
    cvg data index DIR [--split S]   probe a dataset folder (UCF101, Kinetics, BDD100K, ...)
    cvg backends                     which fused-op backends this install has
    cvg bench train [--preset P] [--level L|all] [--configs ...]   training-step speed
    cvg bench generate [--preset P] [--lengths ...]                 sampling speed and memory
    cvg bench data DIR [--presets P,..] [--workers 0,2]            data loading speed
    cvg bench quality [--seeds 0-2] [--label L] [--set KEY=VALUE]  quality over seeds (mean ± sd)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cvg_fast.errors import CvgError, run_main


def _motion_report(videos) -> tuple[float, float]:
    """(mean |frame_t+1 - frame_t|, mean fraction of 'bright' pixels) over uint8 (N, T, H, W, 3)."""
    import numpy as np

    v = videos.astype(np.float32) / 255.0
    motion = float(np.abs(np.diff(v, axis=1)).mean())
    on_screen = float((v.max(axis=-1) > 0.5).mean())
    return motion, on_screen


def _grid_from_files(paths, png: Path, frames: int, size: int) -> int:
    """Grid PNG of up to 8 written videos x 16 frames spread over their length; the stride."""
    import numpy as np

    from cvg_fast.data.video_io import read_clip, save_frame_grid_png

    stride = max(frames // 16, 1)
    n = min(16, (frames - 1) // stride + 1)
    save_frame_grid_png(png, np.stack([read_clip(p, 0, n, stride, size) for p in paths[:8]]))
    return stride


DEMO_METRICS = ("fvdsynth_16f", "fvdsynth_64f", "issynth", "accsynth", "speedsynth_16f",
                "speedsynth_64f", "flickersynth_16f", "flickersynth_64f")


def cmd_demo(args) -> int:
    import json

    import numpy as np

    from cvg_fast.data.synthetic import demo_data_spec, ensure_synthetic_set
    from cvg_fast.config import get_preset
    from cvg_fast.data.video_io import read_clip
    from cvg_fast.metrics import parse_metric
    from cvg_fast.metrics.sources import bilinear_source, cascade_source, folder_source
    from cvg_fast.metrics.suite import MetricSuite, format_motion, format_table
    from cvg_fast.metrics.synth_evaluator import load_synth_evaluator
    from cvg_fast.nn.precision import resolve_precision
    from cvg_fast.ops.backends import describe_backends
    from cvg_fast.sampling import generate, load_cascade
    from cvg_fast.training import train_level

    if args.num_eval_videos < 8 or args.num_eval_videos % 4:
        raise CvgError(f"--num-eval-videos must be a multiple of 4 and >= 8 "
                       f"(got {args.num_eval_videos})")
    t0 = time.time()
    out = Path(args.out)
    data, heldout, run, videos = out / "data", out / "heldout", out / "run", out / "videos"
    cfg = get_preset("tiny")
    cfg.train.amp, cfg.train.channels_last = args.amp, args.channels_last
    cfg.train.seed = args.seed
    prec = dict(amp=args.amp, channels_last=args.channels_last)  # sampling as trained
    top = cfg.levels[-1]
    long_frames = top.frames * 4  # 4x the training length
    # level 2 starts as the exact upsampled input (residual gain 0) and needs fewer steps
    steps = {1: args.steps or cfg.train.steps, 2: args.steps or max(cfg.train.steps * 2 // 5, 1)}
    print(f"cvg demo: everything goes to {out.resolve()}")
    print(f"backends: {describe_backends()}")
    print(f"precision: {resolve_precision('cpu', args.amp, args.channels_last).describe()}")
    print("[1/6] synthetic data (real .mp4 files of moving shapes): training set and a held-out "
          "set for the metrics' floor")
    spec = demo_data_spec(cfg, args.num_eval_videos)
    ensure_synthetic_set(data, 0, spec, "the training set")
    ensure_synthetic_set(heldout, 1, spec, "the held-out set")
    print("[2/6] the synthetic-set evaluator (features for FVD-synth, classes for accuracy)")
    load_synth_evaluator(data, progress=True)
    for level in range(1, cfg.num_levels + 1):
        lv = cfg.levels[level - 1]
        cfg.train.steps = steps[level]
        cfg.train.checkpoint_every = cfg.train.sample_every = max(steps[level] // 2, 1)
        print(f"[{level + 2}/6] training level {level}: {lv.frames} frames at {lv.size}px, "
              f"{steps[level]} steps")
        train_level(cfg, level, data, run, overwrite=True, device="cpu")
    print(f"[5/6] generating {args.num_videos} videos of {long_frames} frames "
          f"(4x the training length of {top.frames})")
    cascade = load_cascade(run, device="cpu")
    paths, stats = generate(cascade, num_videos=args.num_videos, frames=long_frames, out=videos,
                            seed=args.seed, overlap=0.5, return_stats=True, **prec)
    grid = videos / "grid.png"  # 16 columns spanning the whole video, past the horizon
    stride = _grid_from_files(paths, grid, long_frames, stats.size)
    # motion as the viewer sees it: measured on the decoded files
    motion, on_screen = _motion_report(
        np.stack([read_clip(p, 0, long_frames, 1, stats.size) for p in paths]))
    for level, err in stats.matching_error.items():
        print(f"matching error, level {level}: mean |downsample(x^{level}) - x^{level - 1}| = "
              f"{err:.4f} (0-1 scale; small = the upscaler stays on its input)")
    print(f"motion: mean |frame t+1 - frame t| = {motion:.4f}; bright pixels {on_screen:.1%}")
    if not np.isfinite(motion):
        raise CvgError("generated videos are not finite")

    n = args.num_eval_videos
    print(f"[6/6] metrics on {n} videos per row against {n} training clips")
    specs = [parse_metric(m, top.frames, n) for m in DEMO_METRICS]
    suite = MetricSuite(specs, data, size=top.size, stride=cfg.frame_stride, seed=args.seed)
    rows = {
        "real": suite.evaluate(folder_source(heldout, top.size, cfg.frame_stride, args.seed),
                               "real"),
        "bilinear": suite.evaluate(bilinear_source(cascade, 1, seed=args.seed, **prec),
                                   "bilinear"),
        "cascade": suite.evaluate(cascade_source(cascade, seed=args.seed, overlap=0.5, **prec),
                                  "cascade"),
    }
    (out / "metrics.json").write_text(json.dumps(
        {label: {k: r.value for k, r in res.items()} for label, res in rows.items()}, indent=2))
    print("real = held-out real clips (the floor); bilinear = level 1 upsampled in place of "
          "level 2 (an upscaler that learned nothing); cascade = both levels")
    print(format_table(rows, [s for s in specs if s.kind != "motion"]))
    print("motion, generated / real per 16-frame window (1.00 = moves like the real clips):")
    print(format_motion(rows, specs))
    for line in suite.describe():
        print(line)
    for p in paths:
        print(f"video: {p}")
    print(f"frame grid (every {stride}th frame, one row per video): {grid}")
    print(f"metrics: {out / 'metrics.json'}")
    print(f"done in {time.time() - t0:.0f}s")
    return 0


def cmd_ablate(args) -> int:
    from cvg_fast.ablate import parse_windows, run_ablation

    names = None
    if args.variants is not None:
        names = [n for n in args.variants.replace(" ", "").split(",") if n]
    result = run_ablation(args.out, steps=args.steps, steps_level1=args.steps_level1,
                          num_eval_videos=args.num_eval_videos, seed=args.seed, variants=names,
                          windows=parse_windows(args.windows), progress=not args.no_progress,
                          evaluator_budget=args.evaluator_budget)
    print(result.report())
    return 0


def cmd_generate(args) -> int:
    from cvg_fast.sampling import generate, load_cascade

    classes = None
    if args.classes:
        classes = [int(c) for c in args.classes.split(",")]
        if len(classes) == 1:
            classes = classes[0]
    cascade = load_cascade(args.run, levels=args.levels, device=args.device)
    paths, stats = generate(cascade, num_videos=args.num_videos, frames=args.frames,
                            classes=classes, seed=args.seed, out=args.out,
                            batch_size=args.batch_size, fps=args.fps, overlap=args.overlap,
                            return_stats=True, amp=args.amp, channels_last=args.channels_last,
                            chunk_frames=args.chunk_frames, max_batch=args.max_batch,
                            cuda_graphs=False if args.no_cuda_graphs else None)
    print(f"precision: {stats.precision}; level-1 chunks of {stats.chunk_frames} frames, "
          f"up to {stats.max_batch} windows per upscaler call")
    for level, err in stats.matching_error.items():
        print(f"matching error, level {level}: {err:.4f}")
    print(f"{stats.frames} frames at {stats.size}px in {stats.seconds:.1f}s "
          f"({stats.frames_per_second:.1f} frames/s)")
    for p in paths:
        print(p)
    if args.grid:
        png = Path(args.out) / "grid.png"
        stride = _grid_from_files(paths, png, stats.frames // len(paths), stats.size)
        print(f"{png} (every {stride}th frame, one row per video)")
    return 0


def cmd_eval(args) -> int:
    from cvg_fast.metrics.run_eval import evaluate_run

    t0 = time.time()
    metrics = [m for m in (args.metrics or "").replace(",", " ").split() if m] or None
    results, report = evaluate_run(args.run, args.data, metrics=metrics, i3d=args.i3d,
                                   num_videos=args.num_videos, seed=args.seed,
                                   device=args.device, batch_size=args.batch_size,
                                   overlap=args.overlap, skip_bad=args.skip_bad_videos,
                                   progress=not args.no_progress, split=args.split,
                                   layout=args.layout)
    print(report)
    print(f"appended {len(results)} lines to {Path(args.run) / 'metrics.jsonl'} "
          f"({time.time() - t0:.0f}s)")
    return 0


def cmd_memory(args) -> int:
    from cvg_fast.config import get_preset
    from cvg_fast.metrics.memory import format_report, memory_study, parse_frames, write_study

    t0 = time.time()
    cfg = get_preset(args.preset)
    frames = parse_frames(args.frames)
    study = memory_study(cfg, frames, batch_size=args.batch_size, budget_gb=args.budget_gb)
    print(format_report(study))
    png, js = write_study(study, args.out)
    print(f"plot: {png}")
    print(f"numbers: {js}")
    print(f"done in {time.time() - t0:.1f}s")
    return 0


def cmd_bench_train(args) -> int:
    from cvg_fast.bench_train import bench_train

    t0 = time.time()
    result = bench_train(preset=args.preset, level=args.level, batch_size=args.batch_size,
                         steps=args.steps, warmup=args.warmup, configs=args.configs,
                         out=args.out, device=args.device, ops=not args.no_ops)
    print(result.report())
    print(f"done in {time.time() - t0:.1f}s")
    return 0


# `cvg data synth --codec`: the name a user knows -> the FFmpeg encoder (VP9 and MJPEG are
# what DALI's CPU video reader decodes; H.264 is what real datasets mostly hold)
SYNTH_CODECS = {"h264": "libx264", "vp9": "libvpx-vp9", "mjpeg": "mjpeg"}


def cmd_synth(args) -> int:
    from cvg_fast.data import write_synthetic_dataset

    root = write_synthetic_dataset(args.dir, num_classes=args.classes,
                                   videos_per_class=args.videos_per_class, frames=args.frames,
                                   size=args.size, fps=args.fps, seed=args.seed,
                                   codec=SYNTH_CODECS[args.codec])
    print(f"wrote {args.classes * args.videos_per_class} {args.codec} videos to {root}")
    return 0


def cmd_data_index(args) -> int:
    from cvg_fast.data.folder_index import index_folder

    index = index_folder(args.dir, index_cache=args.cache, progress=not args.no_progress,
                         use_cache=not args.no_cache, split=args.split, layout=args.layout)
    print(index.report(max_failures=args.max_failures))
    return 0


def cmd_backends(args) -> int:
    from cvg_fast.ops.backends import describe_backends

    print(describe_backends())
    return 0


def _precision_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--amp", choices=("auto", "none", "bf16"), default="auto",
                   help="bf16 autocast or fp32 ('none'); default auto: bf16 where the device "
                        "computes it natively (AVX512-BF16/AMX CPU, Ampere+ GPU)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="activations in channels-last order (default: on)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cvg", description="Cascaded Video Generation, fast.")
    sub = p.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("demo", help="synthetic data -> tiny cascade -> long videos, on a CPU")
    d.add_argument("--out", default="cvg_demo", help="output folder (default: ./cvg_demo)")
    d.add_argument("--steps", type=int, default=None,
                   help="training steps of every level (default: 600 for level 1, 240 for level 2)")
    d.add_argument("--num-videos", type=int, default=4, help="videos written to OUT/videos")
    d.add_argument("--num-eval-videos", type=int, default=256,
                   help="clips per metric row; also the size of the training and held-out sets "
                        "(a multiple of 4, default 256)")
    d.add_argument("--seed", type=int, default=0,
                   help="seeds training (weights, noise, clips), sampling and the real clips "
                        "scored (default 0); the synthetic data stays the same. One GAN run is "
                        "one draw: compare seeds before trusting a difference")
    _precision_flags(d)
    d.set_defaults(fn=cmd_demo)

    a = sub.add_parser(
        "ablate", help="the paper's No-MD and window-size ablations on synthetic data (CPU)",
        description="Train level 1 of the tiny preset once, then level 2 once per variant "
                    "(matching discriminator on/off, training window), same steps and seed, "
                    "and print one row of metrics per variant next to real and bilinear.")
    a.add_argument("--out", default="cvg_ablate", help="output folder (default: ./cvg_ablate)")
    a.add_argument("--steps", type=int, default=None,
                   help="level-2 steps of every variant (default: 240, as the demo)")
    a.add_argument("--steps-level1", type=int, default=None,
                   help="level-1 steps (default: 600, the tiny preset's)")
    a.add_argument("--num-eval-videos", type=int, default=256,
                   help="clips per metric row; also the size of the training and held-out sets "
                        "(a multiple of 4, default 256)")
    a.add_argument("--seed", type=int, default=0, help="sampling seed (videos and real clips)")
    a.add_argument("--variants", default=None,
                   help="comma-separated subset of md_w4, nomd_w4 and md_wN for N in --windows "
                        "(default: all)")
    a.add_argument("--windows", default="8",
                   help="extra level-2 training windows, in input frames (1-8), each adding a "
                        "variant md_wN (default: 8)")
    a.add_argument("--evaluator-budget", default="full", choices=("full", "reduced", "tiny"),
                   help="training budget of the synthetic-set evaluator (tiny: smoke tests "
                        "only, its numbers mean little)")
    a.add_argument("--no-progress", action="store_true", help="no progress bars")
    a.set_defaults(fn=cmd_ablate)

    g = sub.add_parser("generate", help="sample videos of any length from a trained run")
    g.add_argument("run", help="run folder (holds level1/, level2/, ...)")
    g.add_argument("--frames", type=int, default=None, help="frames per video (default: the "
                                                            "training length)")
    g.add_argument("--out", required=True, help="folder for the .mp4 files")
    g.add_argument("--num-videos", type=int, default=1)
    g.add_argument("--classes", default=None, help="one class, or one per video: 0,1,2")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--levels", type=int, default=None, help="stop at this level")
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--overlap", type=float, default=0.0,
                   help="fraction of each upscaler window shared with the next, cut in its middle (0-0.5)")
    g.add_argument("--fps", type=int, default=None)
    g.add_argument("--device", default=None)
    g.add_argument("--chunk-frames", type=int, default=None,
                   help="level-1 frames per chunk (default: 64 frames' worth of 16px pixels, "
                        "at least its training length); memory does not grow with --frames "
                        "either way")
    g.add_argument("--max-batch", type=int, default=None,
                   help="videos x window positions per upscaler call (default: sized from "
                        "free memory)")
    g.add_argument("--no-cuda-graphs", action="store_true",
                   help="on CUDA, run every call eagerly instead of replaying CUDA graphs")
    _precision_flags(g)
    g.add_argument("--grid", action="store_true", help="also write grid.png of the first frames")
    g.set_defaults(fn=cmd_generate)

    from cvg_fast.metrics.registry import METRIC_HELP
    from cvg_fast.metrics.run_eval import DEFAULT_NUM_VIDEOS

    e = sub.add_parser(
        "eval", help="FVD / IS / class accuracy / motion ratios of a trained run",
        description="Generate through a trained run and print its metrics at the training "
                    "length and at 4x it; one JSON line per metric goes to RUN/metrics.jsonl.",
        epilog="metrics: " + "; ".join(f"{k}: {v}" for k, v in METRIC_HELP.items()))
    e.add_argument("run", help="run folder (holds level1/, level2/, ...)")
    e.add_argument("--data", required=True, help="the real videos the run was trained on")
    e.add_argument("--i3d", default=None, help="I3D weights for fvd{N}_{L}f: the PyTorch port's "
                                               "state dict or StyleGAN-V's i3d_torchscript.pt")
    e.add_argument("--metrics", default=None, help="comma-separated names (default: the "
                   "synthetic-set metrics with speed and flicker ratios on synthetic data, flow "
                   "ratios on other data, plus I3D FVD with --i3d; shrunk to what the data "
                   "serves, said in one line)")
    e.add_argument("--num-videos", type=int, default=DEFAULT_NUM_VIDEOS,
                   help=f"generated (and real) clips per metric (default {DEFAULT_NUM_VIDEOS}, "
                        f"sized for a CPU; the paper uses 2048)")
    e.add_argument("--seed", type=int, default=0, help="noise of the generated videos and "
                                                       "choice of real clips")
    e.add_argument("--batch-size", type=int, default=16)
    e.add_argument("--overlap", type=float, default=0.0, help="upscaler window overlap "
                                                              "(as in cvg generate)")
    e.add_argument("--device", default=None)
    e.add_argument("--skip-bad-videos", action="store_true",
                   help="skip unreadable or too-short real videos instead of stopping")
    from cvg_fast.data.layouts import LAYOUT_HELP, SPLIT_HELP

    e.add_argument("--split", default=None, help=f"real videos: {SPLIT_HELP}")
    e.add_argument("--layout", default="auto", help=LAYOUT_HELP)
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(fn=cmd_eval)

    t = sub.add_parser("train", help="train one level (same options as train/level.py)",
                       add_help=False)
    t.set_defaults(fn=None)

    m = sub.add_parser(
        "memory", help="memory of a training step vs output length: cascade vs one model",
        description="Saved activations (counted exactly, on fake tensors), parameters, grads "
                    "and Adam state of one training step of each cascade level and of a "
                    "non-cascaded model at the top size, per output length (paper, Fig. 3).")
    m.add_argument("--preset", default="kinetics600", help="preset (default: kinetics600)")
    m.add_argument("--frames", default="12,24,48,96,192",
                   help="comma-separated output lengths at the top level (default: "
                        "12,24,48,96,192)")
    m.add_argument("--batch-size", type=int, default=1, help="videos per step (default: 1)")
    m.add_argument("--budget-gb", type=float, default=16.0,
                   help="memory budget for 'frames that fit' and the plot (default: 16)")
    m.add_argument("--out", default="cvg_memory", help="folder for memory_<preset>.png/.json "
                                                       "(default: ./cvg_memory)")
    m.set_defaults(fn=cmd_memory)

    data = sub.add_parser("data", help="datasets")
    dsub = data.add_subparsers(dest="data_cmd", required=True)
    s = dsub.add_parser("synth", help="write the built-in synthetic dataset")
    s.add_argument("dir")
    s.add_argument("--classes", type=int, default=4)
    s.add_argument("--videos-per-class", type=int, default=32)
    s.add_argument("--frames", type=int, default=48)
    s.add_argument("--size", type=int, default=32)
    s.add_argument("--fps", type=int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--codec", default="h264", choices=sorted(SYNTH_CODECS),
                   help="h264 (.mp4, default), vp9 (.webm) or mjpeg (.avi)")
    s.set_defaults(fn=cmd_synth)
    from cvg_fast.data.layouts import LAYOUT_HELP, SPLIT_HELP

    di = dsub.add_parser("index", help="probe every video of a folder and summarise it",
                         description="Videos, classes, total frames, frame rates, sizes and "
                                     "codecs of a dataset folder (UCF101 with its split "
                                     "files, Kinetics with its CSVs, BDD100K split folders, "
                                     "class subfolders or flat), and every unreadable file "
                                     "with its reason. The probe results are cached for "
                                     "training runs.")
    di.add_argument("dir")
    di.add_argument("--cache", default=None, help="index cache JSON (default: "
                                                  "DIR/.cvg_cache/data_index.json)")
    di.add_argument("--no-cache", action="store_true", help="probe everything, write nothing")
    di.add_argument("--max-failures", type=int, default=20, help="unreadable files listed")
    di.add_argument("--split", default=None, help=SPLIT_HELP)
    di.add_argument("--layout", default="auto", help=LAYOUT_HELP)
    di.add_argument("--no-progress", action="store_true")
    di.set_defaults(fn=cmd_data_index)

    b = sub.add_parser("backends", help="list the fused-op backends found")
    b.set_defaults(fn=cmd_backends)

    from cvg_fast.bench_train import CONFIGS, DEFAULT_CONFIGS

    bench = sub.add_parser("bench", help="benchmarks")
    bsub = bench.add_subparsers(dest="bench_cmd", required=True)
    bt = bsub.add_parser(
        "train", help="speed of a whole training step: fp32/bf16, layouts, fused kernels, "
                      "torch.compile; and a per-op table",
        description="Time LevelTrainer.train_step on one fixed random batch under each "
                    "configuration, side by side (lower levels are made on the fly, 1 step "
                    "each); prints a table per level and writes a JSON file under --out.")
    bt.add_argument("--preset", default="tiny", help="preset (default: tiny)")
    bt.add_argument("--level", default="all", help="a level number or 'all' (default: all)")
    bt.add_argument("--batch-size", type=int, default=None,
                    help="videos per step (default: the preset's training batch size)")
    bt.add_argument("--steps", type=int, default=10, help="timed steps (default: 10)")
    bt.add_argument("--warmup", type=int, default=2,
                    help="untimed steps first, compile included (default: 2)")
    bt.add_argument("--configs", nargs="+", default=None,
                    help=f"subset of {', '.join(CONFIGS)} (space- or comma-separated), or "
                         f"'all' (default: {', '.join(DEFAULT_CONFIGS)}; bf16-compile's CPU "
                         f"compile takes minutes)")
    bt.add_argument("--no-ops", action="store_true",
                    help="skip the per-op table (fused vs eager vs compile, GB/s)")
    bt.add_argument("--device", default=None, help="cpu or cuda (default: cuda if visible)")
    bt.add_argument("--out", default="bench/results",
                    help="folder for train_<preset>_<device>_<time>.json (default: bench/results)")
    bt.set_defaults(fn=cmd_bench_train)
    from cvg_fast import bench_generate

    bg = bsub.add_parser(
        "generate", help="frames/s and peak memory of generate() vs the naive pipeline",
        description="Sampling speed and peak memory for lengths 64 ... 16,384, ours against the "
                    "naive pipeline (level 1 in one pass, each level over the whole video, the "
                    "whole video then written, fp32), each measurement in a fresh process.")
    bench_generate.add_arguments(bg)
    bg.set_defaults(fn=bench_generate.run_from_args)
    from cvg_fast import bench_data

    bd = bsub.add_parser(
        "data", help="clips/s and frames/s a video folder feeds training, per worker count",
        description="Read training batches from DIR at the presets' clip shapes, whole clips "
                    "(before level-aware decoding) and each level's views, with 0..N loader "
                    "workers; prints clips/s and frames read/s.")
    bench_data.add_arguments(bd)
    bd.set_defaults(fn=bench_data.run_from_args)
    from cvg_fast import bench_quality

    bq = bsub.add_parser(
        "quality", help="the demo's cascade over several seeds: mean ± sd, next to ceilings",
        description="Train level 1 and level 2 of the tiny preset once per seed on the demo's "
                    "synthetic data and score level 1 (base path) and the cascade: FVD-synth, "
                    "accuracy, speed and flicker ratios at 1x, 4x and 16x the training "
                    "length; plus ceiling rows from held-out real clips. Prints mean ± sd "
                    "over seeds and writes one JSON per study; --summarize DIR groups every "
                    "JSON there by --label.")
    bench_quality.add_arguments(bq)
    bq.set_defaults(fn=bench_quality.run_from_args)
    return p


def _main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        from cvg_fast.training.launch import main as train_main

        return train_main(argv[1:])
    args = build_parser().parse_args(argv)
    return args.fn(args)


def main(argv=None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
