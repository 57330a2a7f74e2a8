"""Checkpoint files of a run, and loading trained levels into a Cascade.

Layout of a run folder (one level trained at a time, greedily):
    RUN/level{L}/checkpoint.pt   state dicts (G, G_ema, D, optimisers), step, config: the newest of
    RUN/level{L}/checkpoints/    step{N:07d}.pt, the last K (cvg_fast.training.checkpoints)
    RUN/level{L}/best.pt         the best by an evaluation metric, described in best.json
    RUN/level{L}/config.json     the same config, human-readable
    RUN/level{L}/log.jsonl       one JSON line of losses per logged step
    RUN/level{L}/samples/        PNG grids / videos written during training
"G" is the raw generator (what training resumes); "G_ema", present when the run kept an
EMA of G (--ema-decay > 0), is what generate, eval and the next level sample by default.
Checkpoints hold only tensors and plain data: they load with
`torch.load(weights_only=True)` (no pickled code runs). Writes go to a
temporary file and are renamed into place, so a crash never leaves a
half-written checkpoint.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from cvg_fast.config import CascadeConfig
from cvg_fast.errors import CvgError
from cvg_fast.models.cascade import Cascade, build_generator, check_levels_agree

FORMAT = "cvg-fast/1"


def level_dir(run: str | os.PathLike, level: int) -> Path:
    return Path(run) / f"level{level}"


def checkpoint_path(run: str | os.PathLike, level: int) -> Path:
    return level_dir(run, level) / "checkpoint.pt"


def atomic_write_bytes(path: Path, write) -> None:
    """Call write(file_object) on a temp file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path: Path, state: dict) -> None:
    state = {"format": FORMAT, **state}
    atomic_write_bytes(Path(path), lambda f: torch.save(state, f))


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CvgError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a damaged or foreign file: say so in one line
        raise CvgError(f"{path}: not a readable cvg-fast checkpoint ({type(e).__name__}: "
                       f"{str(e).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CvgError(f"{path}: not a cvg-fast checkpoint (format {FORMAT!r} expected)")
    return state


def trained_levels(run: str | os.PathLike) -> list[int]:
    """Levels 1..L of `run` that have a checkpoint, contiguous from 1."""
    levels, level = [], 1
    while checkpoint_path(run, level).is_file():
        levels.append(level)
        level += 1
    return levels


def load_generator(run: str | os.PathLike, level: int, device: torch.device | str = "cpu",
                   ema: bool = True) -> tuple[torch.nn.Module, CascadeConfig, int]:
    """(generator in eval mode without grad, its config, num_classes) of one trained level:
    the EMA of its weights where the checkpoint has one (`ema=False`: the raw G)."""
    state = load_checkpoint(checkpoint_path(run, level))
    cfg = CascadeConfig.from_dict(state["config"])
    num_classes = int(state["num_classes"])
    g = build_generator(cfg, level, num_classes)
    try:
        result = g.load_state_dict(state["G_ema" if ema and "G_ema" in state else "G"],
                                   strict=False)
        problems = ([f"missing {k}" for k in result.missing_keys]
                    + [f"unexpected {k}" for k in result.unexpected_keys])
    except RuntimeError as e:  # shapes that differ: the first "size mismatch" line says which
        lines = [ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln]
        problems = lines or [str(e).splitlines()[0]]
    if problems:  # weights of another architecture (an older cvg-fast, an edited config)
        more = f" and {len(problems) - 2} more" if len(problems) > 2 else ""
        raise CvgError(f"{checkpoint_path(run, level)}: its generator weights do not fit the "
                       f"level-{level} generator its config describes ({'; '.join(problems[:2])[:200]}"
                       f"{more}); retrain this level")
    g.to(device).eval().requires_grad_(False)
    return g, cfg, num_classes


def load_cascade(run: str | os.PathLike, levels: int | None = None,
                 device: torch.device | str | None = None, ema: bool = True) -> Cascade:
    """The trained levels 1..`levels` (default: all found) of a run folder, frozen; each
    level's EMA generator where it has one (`ema=False`: the raw ones).

    Each level is built from the config it was trained with (its checkpoint's).
    Raises a one-line CvgError when the folder or level 1 is missing, or when a
    level was trained with shapes, frame stride or classes that disagree with the
    levels below it.
    """
    run = Path(run)
    if not run.is_dir():
        raise CvgError(f"run folder {run} does not exist: train level 1 first "
                       f"(torchrun ... train/level.py --level 1 --out {run})")
    found = trained_levels(run)
    if not found:
        raise CvgError(f"{run} has no trained level 1 ({checkpoint_path(run, 1)} missing): "
                       f"train it first with train/level.py --level 1 --out {run}")
    want = levels or len(found)
    if want > len(found):
        raise CvgError(f"{run} has levels 1..{len(found)} trained, level {len(found) + 1} is "
                       f"missing: train it with train/level.py --level {len(found) + 1} --out {run}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    gens, cfgs, classes = [], [], []
    for level in range(1, want + 1):
        g, cfg, nc = load_generator(run, level, device, ema=ema)
        gens.append(g)
        cfgs.append(cfg)
        classes.append(nc)
    check_levels_agree(cfgs, classes, where=str(run))
    return Cascade(cfgs, gens, classes[0])
