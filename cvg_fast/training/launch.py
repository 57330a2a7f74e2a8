"""Command line of one level's training: `train/level.py` and `cvg train`.

    torchrun --nproc_per_node=N train/level.py --preset P --level L --data DIR --out RUN

Every preset value can be overridden: training options (--steps, --batch-size,
--lr-g, ...), cascade options (--num-classes, --frame-stride, ...) and the
trained level's own (--window, --g-ch, --d-ch, --d-frames, --no-matching).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from cvg_fast.config import PRESETS, CascadeConfig, LevelConfig, TrainConfig, get_preset
from cvg_fast.data.layouts import LAYOUT_HELP, SPLIT_HELP

_CASCADE_SCALARS = ("num_classes", "z_dim", "z_ch", "z_t_dim", "motion_dim", "frame_stride", "fps")


# fields whose flags are not "--name VALUE"
_SPECIAL = {
    "amp": dict(choices=["auto", "none", "bf16"],
                help="precision: bf16 autocast or fp32 ('none'); default auto: bf16 where the "
                     "device computes it natively (AVX512-BF16/AMX CPU, Ampere+ GPU)"),
    "grad_sync": dict(choices=["auto", "overlap", "flat"],
                      help="gradient averaging across processes: overlap (bucketed "
                           "all-reduces during backward) or flat (one after it); default "
                           "auto: overlap on CUDA, flat on CPU (overlap measured no gain there)"),
    "channels_last": dict(action=argparse.BooleanOptionalAction,
                          help="activations in channels-last order (default: on, the fastest "
                               "measured on CPU and GPU)"),
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_fields(p: argparse.ArgumentParser, cls, names=None, skip=()) -> None:
    for f in dataclasses.fields(cls):
        if (names and f.name not in names) or f.name in skip:
            continue
        if f.type in (bool, "bool"):
            continue
        typ = {"int": int, "float": float, "str": str}.get(str(f.type), f.type)
        if f.name in _SPECIAL:
            p.add_argument(_flag(f.name), dest=f"{cls.__name__}.{f.name}", default=None,
                           **_SPECIAL[f.name])
            continue
        p.add_argument(_flag(f.name), dest=f"{cls.__name__}.{f.name}", type=typ, default=None,
                       metavar=f.name.upper(), help=f"override the preset's {f.name}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train/level.py",
        description="Train ONE level of a CVG cascade (greedy: level 1 first, then 2, ...).")
    p.add_argument("--preset", default="tiny", help=f"one of {', '.join(sorted(PRESETS))}")
    p.add_argument("--level", type=int, required=True, help="level to train (1 = from noise)")
    p.add_argument("--data", required=True,
                   help="dataset folder: UCF101, Kinetics (CSVs), BDD100K, one subfolder "
                        "per class, or a flat folder (see --split, --layout)")
    p.add_argument("--split", default=None, help=SPLIT_HELP)
    p.add_argument("--layout", default="auto", help=LAYOUT_HELP)
    p.add_argument("--out", default=None,
                   help="run folder; levels go to OUT/level{L}/ (default: runs/<preset>)")
    p.add_argument("--prev", default=None, help="run folder holding the trained lower levels "
                                                "(default: --out)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in OUT/level{L}/checkpoints/ that "
                        "loads (a damaged newest one falls back to the previous)")
    p.add_argument("--overwrite", action="store_true", help="start over even if a checkpoint "
                                                            "exists")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="default: cuda if available")
    p.add_argument("--skip-bad-videos", action="store_true",
                   help="skip unreadable or too-short videos instead of stopping")
    p.add_argument("--data-backend", choices=["auto", "pyav", "dali"], default="auto",
                   help="who decodes the training clips: pyav (CPU worker processes), dali "
                        "(NVIDIA DALI: NVDEC on cuda; VP8/VP9/MJPEG only on cpu; files DALI "
                        "cannot decode fall back to PyAV with a warning) or auto (default: "
                        "DALI on cuda when installed, else PyAV)")
    p.add_argument("--dali-only", action="store_true",
                   help="with DALI: stop with an error instead of reading files DALI cannot "
                        "decode with PyAV")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-tensorboard", action="store_true",
                   help="no TensorBoard event files in OUT/level{L}/tb/ (log.jsonl only)")
    p.add_argument("--no-matching", action="store_true",
                   help="drop the matching discriminator (the paper's 'No MD' ablation)")
    p.add_argument("--eval-every", type=int, default=0, metavar="N",
                   help="every N steps and at the end, log the run's metric to log.jsonl: "
                        "FVD-synth on a synthetic dataset, I3D FVD with --i3d (best.pt is "
                        "chosen on it); on synthetic data also speed and flicker ratios")
    p.add_argument("--eval-videos", type=int, default=128, metavar="N",
                   help="generated and real clips per evaluation (default 128)")
    p.add_argument("--i3d", default=None, metavar="PATH",
                   help="I3D weights for --eval-every (the PyTorch port's state dict or "
                        "StyleGAN-V's i3d_torchscript.pt)")
    _add_fields(p, TrainConfig)
    _add_fields(p, CascadeConfig, names=_CASCADE_SCALARS)
    _add_fields(p, LevelConfig, skip=("frames", "size"))
    return p


def config_from_args(args: argparse.Namespace) -> CascadeConfig:
    """The preset with every given override applied to it (level fields: the trained level)."""
    cfg = get_preset(args.preset)
    level = cfg.levels[min(max(args.level, 1), cfg.num_levels) - 1]
    for key, value in vars(args).items():
        if "." not in key or value is None:
            continue
        cls, name = key.split(".")
        target = {"TrainConfig": cfg.train, "CascadeConfig": cfg, "LevelConfig": level}[cls]
        setattr(target, name, value)
    if args.no_matching:
        level.matching = False
    return cfg.validate()


def main(argv=None) -> int:
    from cvg_fast.errors import CvgError
    from cvg_fast.training.trainer import train_level
    from cvg_fast.training.distributed import shutdown_distributed

    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    if not 1 <= args.level <= cfg.num_levels:
        raise CvgError(f"--level {args.level} is out of range: preset {cfg.name!r} has levels "
                       f"1..{cfg.num_levels}")
    out = args.out if args.out is not None else str(Path("runs") / args.preset)
    eval_fn = None
    if args.eval_every:
        from cvg_fast.metrics.run_eval import training_eval

        eval_fn = training_eval(args.data, cfg, args.level, i3d=args.i3d,
                                num_videos=args.eval_videos, seed=cfg.train.seed,
                                skip_bad=args.skip_bad_videos, split=args.split,
                                layout=args.layout)
    try:
        result = train_level(cfg, args.level, args.data, out, prev=args.prev,
                             resume=args.resume, overwrite=args.overwrite, device=args.device,
                             skip_bad_videos=args.skip_bad_videos, progress=not args.no_progress,
                             eval_fn=eval_fn, eval_every=args.eval_every, split=args.split,
                             layout=args.layout, data_backend=args.data_backend,
                             dali_only=args.dali_only, tensorboard=not args.no_tensorboard)
    finally:
        shutdown_distributed()
    if int(os.environ.get("RANK", "0")) == 0:  # once per job, not once per process
        print(f"level {result.level}: {result.steps} steps in {result.seconds:.0f}s -> "
              f"{result.run_dir}/level{result.level}/checkpoint.pt")
    return 0
