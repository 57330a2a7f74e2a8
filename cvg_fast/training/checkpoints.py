"""The checkpoint files of one level's run: step-numbered, keep the last K, a best slot.

Layout (RUN/level{L}/):
    checkpoints/step{N:07d}.pt   every save; the K newest are kept (--keep-checkpoints)
    checkpoint.pt                the newest save: what generate, eval and the next level read
    best.pt, best.json           the best by a metric (`save_best`, called after evaluations)

checkpoint.pt is a HARD LINK to the newest step file, made under a temporary name and
renamed over the old one (atomic): no second copy of the bytes to write or store, and
pruning the step file later leaves the link's data in place. Step files are never
modified after their rename, so sharing the inode cannot leak a later change. Where the
file system has no hard links (some FUSE / object-store mounts) it is an atomic copy.

`load_latest` tries the newest file first and falls back, file by file, past any that
is truncated or damaged: a zip CRC check of every record (torch.load alone does not
notice flipped bits in tensor data) and a `weights_only=True` load.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path


from cvg_fast.errors import CvgError
from cvg_fast.models.checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint

_STEP_FILE = re.compile(r"^step(\d+)\.pt$")


@dataclass
class Loaded:
    """A checkpoint that loaded: its state dict, file, and the newer files that did not."""

    state: dict
    path: Path
    damaged: list[tuple[Path, str]] = field(default_factory=list)  # (file, why), newest first

    @property
    def step(self) -> int:
        return int(self.state["step"])


def archive_problem(path: Path) -> str | None:
    """Why `path` is not an intact torch zip archive (truncated, a record failing its CRC),
    or None. Reads the whole file once (zlib's CRC32 runs at GB/s)."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        return f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else 'truncated'}"
    return f"record {bad} fails its CRC check" if bad is not None else None


class CheckpointManager:
    """Save, prune, publish and load the checkpoints of one level (see the module doc).

    Writes happen on the main process only (the trainer calls `save` there); loading is
    done by every process, from the same shared folder.
    """

    def __init__(self, level_dir: str | os.PathLike, keep: int = 3):
        if keep < 1:
            raise CvgError(f"--keep-checkpoints {keep}: keep at least 1 checkpoint")
        self.dir = Path(level_dir)
        self.keep = keep
        self.steps_dir = self.dir / "checkpoints"
        self.latest = self.dir / "checkpoint.pt"
        self.best_path = self.dir / "best.pt"
        self.best_json = self.dir / "best.json"
        self.linked: bool | None = None  # how the last save published checkpoint.pt

    # ------------------------------------------------------------- listing
    def step_path(self, step: int) -> Path:
        return self.steps_dir / f"step{step:07d}.pt"

    def step_files(self) -> list[tuple[int, Path]]:
        """(step, file) of every step file, oldest first."""
        if not self.steps_dir.is_dir():
            return []
        found = []
        for p in self.steps_dir.iterdir():
            m = _STEP_FILE.match(p.name)
            if m and p.is_file():
                found.append((int(m.group(1)), p))
        return sorted(found)

    def exists(self) -> bool:
        """Is there anything to resume from (a step file or checkpoint.pt)?"""
        return self.latest.is_file() or bool(self.step_files())

    # -------------------------------------------------------------- saving
    def save(self, step: int, state: dict) -> Path:
        """Write step{step}.pt atomically, make it checkpoint.pt, prune to the newest K."""
        path = self.step_path(step)
        save_checkpoint(path, state)
        self._publish(path)
        self._prune(step)
        return path

    def _publish(self, path: Path) -> None:
        """checkpoint.pt := `path`: a hard link renamed into place, else an atomic copy."""
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".checkpoint.pt.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)  # os.link needs a free name; mkstemp only reserved a unique one
        try:
            os.link(path, tmp)
        except OSError:
            self.linked = False
            with open(path, "rb") as src:
                atomic_write_bytes(self.latest, lambda f: shutil.copyfileobj(src, f, 1 << 24))
            return
        try:
            os.replace(tmp, self.latest)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise
        self.linked = True

    def _prune(self, step: int) -> None:
        """Keep the K newest step files up to `step`; files past it belong to a trajectory
        this run abandoned (a rollback or a resume that fell back) and would be taken for
        the newest by the next resume."""
        files = self.step_files()
        current = [p for s, p in files if s <= step]
        stale = [p for s, p in files if s > step]
        for p in current[:-self.keep] + stale:
            p.unlink(missing_ok=True)

    def discard(self) -> None:
        """--overwrite: remove every checkpoint and the best slot of the old run, so that
        neither a resume nor a best comparison ever mixes the two runs."""
        for _, p in self.step_files():
            p.unlink()
        for p in (self.latest, self.best_path, self.best_json):
            p.unlink(missing_ok=True)

    # ------------------------------------------------------------- loading
    def candidates(self) -> list[Path]:
        """Files to try, newest first: the newest step file, checkpoint.pt when it is a
        separate file (a copy, or a run from before step files), the older step files."""
        steps = [p for _, p in reversed(self.step_files())]
        if self.latest.is_file() and not any(_same_file(self.latest, p) for p in steps):
            return steps[:1] + [self.latest] + steps[1:]
        return steps

    def load_latest(self, map_location="cpu") -> Loaded:
        """The newest checkpoint that loads; the damaged newer ones come back in `damaged`.
        One-line CvgError when there is none or none loads."""
        tried = self.candidates()
        if not tried:
            raise CvgError(f"--resume: no checkpoint in {self.dir} to continue from")
        damaged: list[tuple[Path, str]] = []
        for path in tried:
            why = archive_problem(path)
            if why is None:
                try:
                    return Loaded(load_checkpoint(path, map_location), path, damaged)
                except CvgError as e:
                    why = str(e).removeprefix(f"{path}: ")
            damaged.append((path, why))
        raise CvgError(f"none of the {len(tried)} checkpoints in {self.dir} loads (newest "
                       f"{tried[0].name}: {damaged[0][1]}); start again with --overwrite")

    def set_aside(self, loaded: Loaded) -> None:
        """Main process, after every process has loaded: rename the damaged files to
        *.damaged (kept for inspection, out of the way of the next resume and of pruning)
        and point checkpoint.pt at the file that loaded."""
        for path, _ in loaded.damaged:
            if path != self.latest and path.exists():
                path.replace(path.with_name(path.name + ".damaged"))
        if loaded.damaged and loaded.path != self.latest:
            self._publish(loaded.path)

    # ---------------------------------------------------------- best slot
    def best(self) -> dict | None:
        """best.json: {"metric", "value", "step", "lower_is_better", "file"}, or None."""
        if not self.best_json.is_file():
            return None
        try:
            return json.loads(self.best_json.read_text())
        except (OSError, ValueError) as e:
            warnings.warn(f"{self.best_json}: unreadable ({e}); the next evaluation becomes "
                          f"the best", stacklevel=2)
            return None

    def save_best(self, metric: str, value: float, step: int, state: dict,
                  lower_is_better: bool = True) -> bool:
        """Write `state` to best.pt (and best.json) if `value` beats the recorded best.

        A non-finite value never does. A different metric name than the recorded one
        starts a new best (their values do not compare), with a one-line warning.
        best.pt is written before best.json, both atomically; best.pt also carries the
        record under "best", so it is self-describing if the JSON is lost.
        Returns whether it was written.
        """
        value = float(value)
        if not math.isfinite(value):
            return False
        old = self.best()
        if old is not None and old.get("metric") != metric:
            warnings.warn(f"{self.best_json}: best by {old.get('metric')!r} replaced by the "
                          f"first value of {metric!r} ({value:g} at step {step})", stacklevel=2)
            old = None
        if old is not None:
            better = value < old["value"] if lower_is_better else value > old["value"]
            if not better:
                return False
        record = {"metric": metric, "value": value, "step": int(step),
                  "lower_is_better": bool(lower_is_better), "file": self.best_path.name}
        save_checkpoint(self.best_path, {**state, "best": record})
        text = json.dumps(record, indent=2).encode()
        atomic_write_bytes(self.best_json, lambda f: f.write(text))
        return True


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def resume_change(state: dict, world: int, batch_size: int, path: Path) -> str | None:
    """What resuming `state` with `world` processes x `batch_size` changes, in one line
    (None: nothing), or a one-line CvgError where the run could not continue as the same
    run.

    Batches are a function of the global clip position: step s reads clips
    s*B .. s*B + B - 1 of the (seed, epoch) permutation stream, B = world x batch_size,
    and process r takes its slice. The same global batch B therefore reads the same clips
    at every step, whatever the split, and the same noise (each draw keyed by the sample's
    global position: `BatchRandom`): allowed, the same run up to float summation order
    (gradients and BN statistics summed across another number of processes), said in one
    line.
    A different B would jump to another place in the data stream (clips skipped or
    repeated) and change the optimisation (the learning rates are tuned for B): refused,
    naming the per-process batch that keeps B.
    """
    old_world = int(state.get("world", 1))
    old_batch = int(state.get("batch_size", state["config"]["train"]["batch_size"]))
    if (old_world, old_batch) == (world, batch_size):
        return None
    old_global, new_global = old_world * old_batch, world * batch_size
    was = f"{old_world} process(es) x batch {old_batch}"
    if old_global != new_global:
        fix = (f"pass --batch-size {old_global // world}" if old_global % world == 0 else
               f"use a number of processes that divides {old_global}")
        raise CvgError(f"--resume: {path} was trained with a global batch of {old_global} "
                       f"({was}), this run has {new_global} ({world} x {batch_size}): the "
                       f"data order and the optimisation would change; {fix}, or start a new "
                       f"run with --out")
    return (f"resuming {path.name} ({was}) with {world} x {batch_size}: same global batch "
            f"{new_global}: the same clips and noise at every step, so the same run up to "
            f"float summation order")
