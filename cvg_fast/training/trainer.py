"""One level's GAN training loop (greedy cascade training), read top to bottom.

Level 1 learns x^1 from noise. Level L > 1 learns x^L windows from windows of
x̂^{L-1}, made by the frozen, already trained levels below (no gradient ever
reaches them). Real pairs come from the data pyramid of the same clip (eq. 3):
(x^L[s*tf : (s+w)*tf], x^{L-1}[s : s+w]); cvg_fast.training.pairs makes them and the fake ones.

Per step: D update(s) on one batch [real ; fake] (one forward, so one power
iteration per spectral-norm layer), then a G update, then the EMA of G (samples,
evaluation and saved generators use it; cvg_fast.training.ema). Gradients are averaged
across processes; BN statistics are synchronised. Everything random is keyed
by (seed, step, sample's global position) (`BatchRandom`), so `--resume` replays
exactly what an uninterrupted run would have done, and W processes x batch B train
the same run as one process x batch W*B (up to float reduction order).
"""

from __future__ import annotations

import contextlib
from collections import deque
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cvg_fast.config import CascadeConfig
from cvg_fast.errors import CvgError
from cvg_fast.models import Cascade, build_discriminator, build_generator
from cvg_fast.models.cascade import check_levels_agree
from cvg_fast.models.checkpoint import (
    checkpoint_path, level_dir, load_generator, atomic_write_bytes,
)
from cvg_fast.models.noise import BatchRandom
from cvg_fast.nn import spectral_norm_step, standing_statistics
from cvg_fast.nn.batchnorm import sync_world_size
from cvg_fast.nn.layout import set_channels_last
from cvg_fast.nn.precision import resolve_precision
from cvg_fast.training import distributed as D
from cvg_fast.training.bad_videos import BadVideoTally
from cvg_fast.training.checkpoints import CheckpointManager, Loaded, resume_change
from cvg_fast.training.data import first_position, make_train_loader, worker_error
from cvg_fast.training.ema import GeneratorEMA
from cvg_fast.training.grad_sync import OverlappedGradSync, grad_sync_mode
from cvg_fast.training.losses import d_loss, g_loss
from cvg_fast.training.nonfinite import NonFiniteGuard
from cvg_fast.training.pairs import PairMaker
from cvg_fast.training.preemption import StopRequest, StoppedBySignal
from cvg_fast.training.run_memory import format_bytes, memory_bytes, memory_kind
from cvg_fast.training.tensorboard_log import TensorBoardLog
from cvg_fast.training.selection import evaluations_since_best, run_metric


# The metric hook: called with the cascade as trained so far (lower levels + this G, eval
# mode), returns {metric name: value}. Built by the caller (cli/train), so training never
# imports the feature networks.
EvalFn = Callable[[Cascade], dict]


@dataclass
class TrainResult:
    level: int
    steps: int
    run_dir: Path
    last_losses: dict
    seconds: float
    # share of the run's step time spent blocked on the data loader (0..1): above a few
    # percent the GPU (or CPU) waits for video decoding; add workers (--num-workers)
    data_wait: float = 0.0
    # videos skipped (--skip-bad-videos): [(path, "at indexing: ..." | "while training: ...")],
    # also listed in run_dir/level{L}/bad_videos.txt
    bad_videos: list[tuple[str, str]] = field(default_factory=list)
    # --patience evaluations in a row without a new best ended the run (a normal end)
    stopped_early: bool = False


def load_frozen_levels(cfg: CascadeConfig, level: int, prev_run: Path, num_classes: int,
                       device: torch.device) -> Cascade | None:
    """The trained levels 1..level-1, frozen, each driven by the config it was trained with.

    A one-line error if one is missing, or if its frames, size, frame stride or classes
    disagree with this level's config (`cfg`, the one being trained).
    """
    if level == 1:
        return None
    gens, cfgs, classes = [], [], []
    for lower in range(1, level):
        if not checkpoint_path(prev_run, lower).is_file():
            raise CvgError(
                f"level {level} needs the trained level {lower} in {prev_run} "
                f"({checkpoint_path(prev_run, lower)} missing): train it first with "
                f"--level {lower}, or point --prev at the run that has it")
        g, lcfg, nc = load_generator(prev_run, lower, device)
        gens.append(g)
        cfgs.append(lcfg)
        classes.append(nc)
    if classes[0] != num_classes:
        raise CvgError(f"level 1 in {prev_run} has {classes[0]} classes, this run {num_classes}: "
                       f"use the same data and --num-classes")
    check_levels_agree(cfgs + [cfg], classes + [num_classes], where=str(prev_run))
    return Cascade(cfgs, gens, num_classes)


class LevelTrainer:
    """State and steps of one level's training; `run()` is the whole loop."""

    def __init__(self, cfg: CascadeConfig, level: int, dataset, run_dir: Path,
                 prev_run: Path | None, dist: D.DistInfo, resume: bool = False,
                 overwrite: bool = False, progress: bool = True,
                 eval_fn: EvalFn | None = None, eval_every: int = 0,
                 data_backend: str = "auto", dali_only: bool = False,
                 tensorboard: bool = True):
        if not 1 <= level <= cfg.num_levels:
            raise CvgError(f"--level {level} is out of range: preset {cfg.name!r} has levels "
                           f"1..{cfg.num_levels}")
        group = sync_world_size()
        if group != dist.world:  # SyncBatchNorm follows the process group, not `dist`
            raise CvgError(f"this trainer was given world {dist.world} inside a process group of "
                           f"{group}: its synchronised BN would wait on the other processes; "
                           f"pass the job's DistInfo (init_distributed()), or build one-process "
                           f"trainers before the process group exists")
        self.cfg, self.level, self.dist, self.progress = cfg, level, dist, progress
        # OUT/level{L}/tb/ on rank 0 while run() runs (a no-op writer outside it)
        self.tensorboard, self.board = tensorboard, TensorBoardLog(Path(), enabled=False)
        if eval_every < 0 or (eval_every and eval_fn is None):
            raise CvgError(f"eval_every={eval_every} needs a metric (eval_fn) and must be >= 0")
        self.eval_fn, self.eval_every = eval_fn, eval_every
        self.tc = cfg.train
        if self.tc.patience and not eval_every:
            raise CvgError(f"--patience {self.tc.patience} counts evaluations: pass --eval-every "
                           f"N too, or --patience 0")
        self.run_dir, self.dir = Path(run_dir), level_dir(run_dir, level)
        self.device = dist.device
        self.dataset = dataset
        self.data_backend, self.dali_only = data_backend, dali_only
        data_classes = getattr(dataset, "num_classes", 0)
        self.num_classes = data_classes if cfg.num_classes < 0 else cfg.num_classes
        if self.num_classes > 0 and data_classes not in (0, self.num_classes):
            raise CvgError(f"--num-classes {self.num_classes} but the data has {data_classes} "
                           f"class folders")
        if self.num_classes > 0 and data_classes == 0:
            raise CvgError(f"--num-classes {self.num_classes} needs one subfolder per class "
                           f"in the data folder; it has none")

        # step-numbered files, keep-last-K, checkpoint.pt = the newest, the best slot
        self.ckpts = CheckpointManager(self.dir, keep=self.tc.keep_checkpoints)
        ckpt = self.ckpts.latest
        if self.ckpts.exists() and not (resume or overwrite):
            raise CvgError(f"{ckpt if ckpt.is_file() else self.ckpts.steps_dir} exists: pass "
                           f"--resume to continue that run, or choose another --out")
        if resume and not self.ckpts.exists():
            raise CvgError(f"--resume: no checkpoint at {ckpt} to continue from")

        torch.manual_seed(self.tc.seed)  # identical initial weights on every process
        self.G = build_generator(cfg, level, self.num_classes).to(self.device)
        self.D = build_discriminator(cfg, level, self.num_classes).to(self.device)
        self.lower = load_frozen_levels(cfg, level, Path(prev_run or run_dir), self.num_classes,
                                        self.device)
        # bf16 / channels-last: the device's fastest unless the config says (train.amp,
        # train.channels_last); the frozen levels below run the same way
        self.precision = resolve_precision(self.device, self.tc.amp, self.tc.channels_last,
                                           level=level)
        for m in (self.G, self.D, *(self.lower.generators if self.lower is not None else [])):
            set_channels_last(m, self.precision.channels_last)
        # fused Adam on CUDA only: on CPU it saved ~2% of a step, and it updates parameters
        # without bumping their version counters (see SpectralNormMixin.train)
        fused = self.device.type == "cuda"
        betas = (self.tc.beta1, self.tc.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=self.tc.lr_g, betas=betas,
                                      fused=fused)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=self.tc.lr_d, betas=betas,
                                      fused=fused)
        # gradient averaging across processes: overlapping backward, or one all-reduce after
        # it (--grad-sync; auto: overlap on CUDA, flat on CPU, as measured)
        self.grad_sync_mode = grad_sync_mode(self.tc.grad_sync, self.device, dist.world)
        overlap = self.grad_sync_mode == "overlap"
        self.grad_sync = {name: OverlappedGradSync(net, dist.world) if overlap else None
                          for name, net in (("G", self.G), ("D", self.D))}
        # the average of G's weights that samples, evaluation and checkpoint readers use
        self.ema = GeneratorEMA(self.G, self.tc.ema_decay) if self.tc.ema_decay > 0 else None
        self.step = 0
        # NaN/inf steps are skipped (nothing reaches G, D or the optimisers), then rolled back
        self.guard = NonFiniteGuard([self.G, self.D], self.tc.max_nonfinite_steps)
        self.board = TensorBoardLog(self.dir / "tb", enabled=False)  # run() opens the real one
        if resume:
            self._load(self.ckpts.load_latest(map_location=self.device), "resuming")
        elif overwrite and dist.is_main:  # start over: no old step file or best may mix in
            self.ckpts.discard()
        D.broadcast_module(self.G, dist.world)
        D.broadcast_module(self.D, dist.world)
        if self.ema is not None:
            D.broadcast_module(self.ema.model, dist.world)
        self.last: dict = {}
        self._bn_step: int | None = None  # step whose standing BN statistics G holds
        # eq. 3's real and fake pairs (real windows from the pyramid, fake from the levels below)
        self.pairs = PairMaker(cfg, level, self.lower, self.tc, self.device)

    # ------------------------------------------------------------ checkpoints
    def _state(self) -> dict:
        return {"level": self.level, "step": self.step, "config": self.cfg.to_dict(),
                "num_classes": self.num_classes, "G": self.G.state_dict(),
                "D": self.D.state_dict(), "opt_G": self.opt_g.state_dict(),
                "opt_D": self.opt_d.state_dict(), "world": self.dist.world,
                "batch_size": self.tc.batch_size, "skipped_nonfinite": self.guard.skipped,
                # what load_generator reads ("G" is the raw G, for resuming)
                **({"G_ema": self.ema.state_dict()} if self.ema is not None else {})}

    def _load(self, loaded: Loaded, doing: str) -> None:
        """G, D, optimisers and step from `loaded` (CheckpointManager.load_latest), on every
        process. `doing`: "resuming" (the world / batch check, the skip count) or "rolling
        back". Damaged newer files are named in one line each and set aside (rank 0)."""
        state, path = loaded.state, loaded.path
        if state["level"] != self.level or state["num_classes"] != self.num_classes:
            raise CvgError(f"{path} is level {state['level']} with {state['num_classes']} classes; "
                           f"this run is level {self.level} with {self.num_classes}")
        note = None
        if doing == "resuming":
            note = resume_change(state, self.dist.world, self.tc.batch_size, path)
            self.guard.skipped = int(state.get("skipped_nonfinite", 0))
        self.G.load_state_dict(state["G"])
        if self.ema is not None and "G_ema" in state:
            self.ema.load_state_dict(state["G_ema"])
        elif self.ema is not None:  # written with --ema-decay 0: the average starts here
            self.ema.reset(self.G)
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_G"])
        self.opt_d.load_state_dict(state["opt_D"])
        self.step = int(state["step"])
        self._bn_step = None
        steps = {s for (s,) in D.gather_ints([self.step], self.dist.world)}
        if len(steps) > 1:  # a file damaged for some nodes only (not one shared file system?)
            raise CvgError(f"{doing}: the processes loaded different checkpoints (steps "
                           f"{sorted(steps)}) from {self.ckpts.dir}; is it on a file system "
                           f"every node shares?")
        if self.dist.is_main:
            for bad, why in loaded.damaged:
                warnings.warn(f"{bad}: unusable ({why}); {doing} from {path.name} "
                              f"(step {self.step})", stacklevel=2)
            if note:
                warnings.warn(note, stacklevel=2)
            self.ckpts.set_aside(loaded)

    def rollback(self) -> None:
        """After `max_nonfinite_steps` skipped steps in a row: G, D, optimisers and step of
        the newest checkpoint that loads, with a one-line warning; a one-line CvgError
        where that cannot help (no checkpoint yet, or this checkpoint was rolled back to
        before: the run diverges again from it)."""
        at, row, last = self.step, self.guard.in_row, self.guard.bad
        if not self.ckpts.exists():
            self.guard.rolling_back(at, None)
        loaded = self.ckpts.load_latest(map_location=self.device)
        self.guard.rolling_back(at, loaded.step)
        self._load(loaded, "rolling back")
        if self.dist.is_main:
            warnings.warn(f"step {at}: {row} non-finite steps in a row (last: {last}); rolled "
                          f"back to step {self.step} ({loaded.path})", stacklevel=2)

    def save(self) -> None:
        """Standing BN statistics for sampling, then an atomic step-numbered checkpoint that
        becomes checkpoint.pt (rank 0); the oldest beyond --keep-checkpoints are removed."""
        D.check_consistent(self.G, self.dist.world, "G")
        D.check_consistent(self.D, self.dist.world, "D")
        if self.ema is not None:
            D.check_consistent(self.ema.model, self.dist.world, "G (EMA)")
        self.recalibrate_bn()
        if self.dist.is_main:
            self.ckpts.save(self.step, self._state())
            text = json.dumps(self.cfg.to_dict() | {"num_classes_resolved": self.num_classes},
                              indent=2).encode()
            atomic_write_bytes(self.dir / "config.json", lambda f: f.write(text))
        D.barrier()

    def save_best(self, metric: str, value: float | None, lower_is_better: bool = True) -> bool:
        """Keep this step as OUT/level{L}/best.pt (+ best.json: metric, value, step) if
        `value` of `metric` beats the recorded best. Call on EVERY process after
        `evaluate()` (its value matters on the main process only; the others pass what
        they have, e.g. None): the standing BN statistics saved are this step's, which
        `evaluate()` has computed already (else this computes them, a collective).
        Returns whether best.pt was written (False on the other processes)."""
        self.recalibrate_bn()
        if not self.dist.is_main or value is None:
            return False
        return self.ckpts.save_best(metric, value, self.step, self._state(), lower_is_better)

    def _loader(self):
        """(loader from `self.step` on, its one-line description)."""
        tc, dist = self.tc, self.dist
        return make_train_loader(self.data_backend, self.dataset, tc.batch_size, dist.rank,
                                 dist.world, tc.seed, self.step, tc.num_workers, self.device,
                                 self.dali_only)

    # --------------------------------------------------------------- batches
    def batch_random(self, tag: str, n: int, step: int | None = None) -> BatchRandom:
        """The draws of this process's n rows of step `step` (default: this one), keyed by
        (seed, tag, step, global position): position (step * world + rank) * batch + j, as
        the loader's StepSampler numbers the clips, so any world size with the same global
        batch draws the same numbers for the same sample."""
        step = self.step if step is None else step
        first = first_position(step, self.dist.rank, self.dist.world, self.tc.batch_size)
        return BatchRandom((self.tc.seed, tag, step), range(first, first + n), self.device)

    # ------------------------------------------------------------------ step
    def train_step(self, batch: dict) -> dict:
        tc = self.tc
        y = batch["label"].to(self.device) if self.num_classes > 0 else None
        gen = self.batch_random("step", batch["label"].shape[0])
        # bf16 autocast on CPU (AVX512-BF16, oneDNN) and CUDA alike; spectral norm's power
        # iteration and sigma, f_s and the upscaler's residual sum stay fp32 inside
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16,
                             enabled=self.precision.amp == "bf16")
        if "high" in batch:  # the loader decoded only this level's views (LevelViews)
            real_high = batch["high"].to(self.device, non_blocking=True)
            real_low = None
            if self.level > 1:
                real_low = batch["low"].to(self.device, non_blocking=True)
                # the sampler made this draw for the loader (StepSampler): make it here too,
                # so the step's noise is what it was when the trainer cut the windows
                self.pairs.windows(real_high.shape[0], gen)
        else:  # whole top-level clips: the pyramid and the window here
            real_high, real_low = self.pairs.real_pair(
                batch["video"].to(self.device, non_blocking=True), gen)
        n = real_high.shape[0]
        with amp:  # the frozen levels below in the precision they are sampled with
            fake_low = self.pairs.fake_input(y, n, gen)
        yy = torch.cat([y, y]) if y is not None else None
        self.G.train()
        self.D.train().requires_grad_(True)
        # G's weights do not change until its own update: W/sigma (and the power iteration)
        # once for the whole step, shared by the D updates' no-grad samples and G's update
        self.guard.begin_step()
        with spectral_norm_step(self.G), self.pairs.shared_windows("step", self.step):
            logs = self._d_then_g(tc, n, y, yy, gen, amp, real_high, real_low, fake_low)
        if self.guard.end_step():  # skipped: G, D, their buffers and optimisers as before
            logs.setdefault("loss_d", math.nan)
            logs.setdefault("loss_g", math.nan)
            logs["nonfinite"] = self.guard.bad
        elif self.ema is not None:  # the same G on every process: the same average
            self.ema.update(self.G, self.step)
        logs["skipped_nonfinite"] = self.guard.skipped
        return logs

    def _d_then_g(self, tc, n, y, yy, gen, amp, real_high, real_low, fake_low) -> dict:
        """tc.d_steps discriminator updates, then one generator update; their losses.
        An update whose (process-averaged) loss or gradients are not finite is not applied,
        nor are the later ones (`self.guard` notes it; train_step restores the buffers)."""
        logs = {}
        for _ in range(tc.d_steps):
            with torch.no_grad(), amp:
                fake_high = self.pairs.fake(self.G, y, n, gen, fake_low)
            with amp:
                scores = self.D(torch.cat([real_high, fake_high.to(real_high.dtype)]),
                                None if real_low is None else torch.cat([real_low, fake_low]),
                                yy, gen)
            real = {k: v[:n].float() for k, v in scores.items()}
            fake = {k: v[n:].float() for k, v in scores.items()}
            loss_d, parts = d_loss(real, fake, tc.loss)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            mean_d = self._average_gradients("D", loss_d)
            logs.update(parts, loss_d=float(loss_d.detach()))
            if not self.guard.update_ok("loss_d", mean_d, self.D):
                return logs
            self.opt_d.step()

        self.D.requires_grad_(False)
        with amp:
            fake_high = self.pairs.fake(self.G, y, n, gen, fake_low)
            scores = self.D(fake_high, fake_low, y, gen)
        loss_g, parts = g_loss(scores, tc.loss)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        mean_g = self._average_gradients("G", loss_g)
        if self.guard.update_ok("loss_g", mean_g, self.G):
            self.opt_g.step()
        self.D.requires_grad_(True)
        logs.update(parts, loss_g=float(loss_g.detach()))
        return logs

    def _average_gradients(self, name: str, loss: torch.Tensor) -> torch.Tensor:
        """After G's or D's backward: its gradients averaged across processes (the
        overlapped buckets finished, or one flat all-reduce) and the averaged loss."""
        sync = self.grad_sync[name]
        if sync is not None:
            return sync.finish(extra=loss.detach())
        return D.average_gradients(getattr(self, name), self.dist.world, extra=loss.detach())

    # ------------------------------------------------------- BN and samples
    @property
    def sampler(self) -> torch.nn.Module:
        """The generator that samples, evaluation and checkpoint readers use: the EMA of G
        (eval mode) when --ema-decay > 0, else G itself."""
        return self.ema.model if self.ema is not None else self.G

    @torch.no_grad()
    def recalibrate_bn(self) -> None:
        """Standing statistics: average BN stats over a few fresh batches (eval-mode sampling),
        for G and, with its own statistics, the EMA generator (the same inputs and noise)."""
        nb = self.tc.bn_recalibration_batches
        if nb <= 0 or self._bn_step == self.step:  # keyed by step: a second pass is the same
            return
        step = self._bn_step = self.step
        nets = [self.G] + ([self.ema.model] if self.ema is not None else [])
        with contextlib.ExitStack() as standing:
            for net in nets:
                standing.enter_context(standing_statistics(net))
            for i in range(nb):
                n = self.tc.batch_size
                gen = self.batch_random(f"bn{i}", n, step)
                y = gen.randint(self.num_classes, n) if self.num_classes > 0 else None
                # once: the frozen levels are the costly part
                x_low = self.pairs.fake_input(y, n, gen)
                noise = gen.get_state()
                for net in nets:
                    gen.set_state(noise)
                    with self.pairs.shared_windows("bn", step, i):  # BN is synchronised here too
                        self.pairs.fake(net, y, n, gen, x_low)
        self.G.train()

    @torch.no_grad()
    def write_samples(self) -> Path | None:
        """Eval-mode samples of `sampler` (the EMA G by default) with fixed noise: a PNG grid
        (a row per video) and an .mp4. Call on every process (the standing BN statistics
        are a collective); rank 0 writes, the others return None."""
        self.recalibrate_bn()
        if not self.dist.is_main:
            return None
        from cvg_fast.data.video_io import save_frame_grid_png, write_video

        n = min(8, max(self.num_classes, 4))
        gen = BatchRandom((self.tc.seed, "samples"), range(n), self.device)  # the same each time
        y = (torch.arange(n, device=self.device) % self.num_classes
             if self.num_classes > 0 else None)
        net = self.sampler
        net.eval()
        x = self.pairs.fake(net, y, n, gen, self.pairs.fake_input(y, n, gen))
        self.G.train()
        frames = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        videos = frames.permute(0, 1, 3, 4, 2).cpu().numpy()  # (N, T, H, W, 3)
        path = self.dir / "samples" / f"step{self.step:07d}.png"
        save_frame_grid_png(path, videos)
        # the same samples side by side as one playable video (2 px white separators)
        n, t, h, w, c = videos.shape
        tiled = np.full((t, h, n * (w + 2) - 2, c), 255, np.uint8)
        for i in range(n):
            tiled[:, :, i * (w + 2): i * (w + 2) + w] = videos[i]
        write_video(path.with_suffix(".mp4"), tiled, fps=self.cfg.fps)
        self.board.samples(self.step, path, tiled, self.cfg.fps)
        return path

    def current_cascade(self) -> Cascade:
        """Levels 1..L as they are now: the frozen levels below plus this level's `sampler`
        (the EMA G by default)."""
        below = list(self.lower.generators) if self.lower is not None else []
        cfgs = self.lower.cfgs if self.lower is not None else []
        return Cascade(cfgs + [self.cfg], below + [self.sampler], self.num_classes)

    def evaluate(self) -> dict | None:
        """The run's metric on eval-mode samples (standing BN statistics first); rank 0 logs."""
        self.recalibrate_bn()  # every rank: BN statistics are synchronised
        result = None
        if self.dist.is_main:
            t0 = time.time()
            self.sampler.eval()
            try:
                result = {"step": self.step, **self.eval_fn(self.current_cascade()),
                          "eval_seconds": round(time.time() - t0, 2)}
            finally:
                self.G.train()
        D.barrier()
        return result

    # ------------------------------------------------------------------ loop
    def run(self) -> TrainResult:
        tc, dist = self.tc, self.dist
        self.dir.mkdir(parents=True, exist_ok=True)
        bad = BadVideoTally(self.dataset)  # before the loader copies the dataset to workers
        bad_videos, completed, stopped_early = [], False, False
        loader, data_desc = self._loader()
        if dist.is_main and self.progress:  # beside the precision line train_level prints
            print(f"cvg_fast: {data_desc}", flush=True)
        bar = None
        if dist.is_main and self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=tc.steps, initial=self.step, desc=f"level {self.level}",
                       unit="step", dynamic_ncols=True)
        log = open(self.dir / "log.jsonl", "a") if dist.is_main else None
        self.board = TensorBoardLog(self.dir / "tb", enabled=dist.is_main and self.tensorboard)
        # SIGTERM/SIGINT on any rank: every rank stops after the same step, saved
        stop = StopRequest(dist.world, device=self.device)
        t_start, done_at_start = time.time(), self.step
        wait = _DataWait()
        try:
            it = iter(loader)
            while self.step < tc.steps:
                t0 = time.perf_counter()
                try:
                    batch = next(it)
                except CvgError as e:  # from a worker: its one line, not the worker's traceback
                    raise worker_error(e) from None
                t1 = time.perf_counter()
                bad.add(batch)
                logs = self.train_step(batch)
                wait.add(t1 - t0, time.perf_counter() - t1)
                self.step += 1
                self.last = logs
                if bar is not None:
                    bar.update(1)
                    skips = {"skipped": self.guard.skipped} if self.guard.skipped else {}
                    bar.set_postfix(d=f"{logs['loss_d']:.3f}", g=f"{logs['loss_g']:.3f}",
                                    wait=f"{wait.recent():.0%}",
                                    mem=format_bytes(memory_bytes(self.device)[0]), **skips)
                if log is not None and (self.step % tc.log_every == 0 or self.step == tc.steps):
                    rate = (self.step - done_at_start) / max(time.time() - t_start, 1e-9)
                    perf = {"steps_per_s": rate, "data_wait_pct": round(100 * wait.interval(), 2)}
                    log.write(json.dumps({"step": self.step, **logs, **perf}) + "\n")
                    log.flush()
                    mem_now, mem_peak = memory_bytes(self.device)
                    self.board.train_line(self.step, logs, perf | {
                        "memory_GiB": mem_now / 2**30, "peak_memory_GiB": mem_peak / 2**30})
                if self.guard.rollback_due:  # N skipped steps in a row: the last checkpoint
                    self.rollback()
                    del it
                    it = iter(self._loader()[0])  # the batches of the steps replayed
                    if bar is not None:
                        bar.n = self.step
                        bar.refresh()
                    continue
                if stop.agreed(self.step):  # a collective: every rank, every step
                    self.save()  # promptly: no samples, no evaluation inside the grace period
                    break
                at_end = self.step == tc.steps
                # periodic saves wait for a finite step: a rollback target is a good point
                periodic = self.step % tc.checkpoint_every == 0 and not self.guard.in_row
                if at_end or periodic:
                    self.save()
                sampled = at_end or self.step % tc.sample_every == 0
                if sampled:
                    self.write_samples()  # every rank: the standing BN statistics
                if self.eval_every and (at_end or self.step % self.eval_every == 0):
                    result = self.evaluate()
                    if log is not None and result is not None:
                        log.write(json.dumps({"eval": result}) + "\n")
                        log.flush()
                        self.board.evaluation(result)
                        text = ", ".join(f"{k} {v:.3f}" for k, v in result.items()
                                         if k not in ("step", "eval_seconds"))
                        self._say(bar, f"step {self.step}: {text}")
                    note = self.select(result)  # best.pt; the early-stop decision of rank 0
                    if note is not None and not at_end:
                        if not periodic:
                            self.save()  # a normal end: the final checkpoint
                        if not sampled:
                            self.write_samples()
                        if log is not None:
                            log.write(json.dumps({"early_stop": {"step": self.step,
                                                                 "note": note}}) + "\n")
                            log.flush()
                            self._say(bar, note)
                        stopped_early = True
                        break
            completed = True
        finally:
            stop.restore()
            if bar is not None:
                bar.close()
            if log is not None:
                log.close()
            self.board.close()
            if completed or dist.world == 1:  # after an error, no collective across ranks
                bad_videos = bad.finish(self.dir, dist.world, dist.is_main, gather=completed)
        if stop.signal_name is not None:  # every rank: the process exits 0 (StoppedBySignal)
            stopped = StoppedBySignal(stop.signal_name, self.step,
                                      checkpoint_path(self.run_dir, self.level))
            if dist.is_main:
                print(stopped, flush=True)
            raise stopped
        seconds = time.time() - t_start
        if dist.is_main and self.progress and wait.steps:
            hint = (" (above 5%: the loader is the bottleneck; raise --num-workers)"
                    if wait.total() > 0.05 else "")
            rate, who = wait.steps / max(seconds, 1e-9), ", rank 0" if dist.world > 1 else ""
            print(f"level {self.level}: {wait.steps} steps, {rate:.2f} steps/s, "
                  f"{rate * tc.batch_size * dist.world:.1f} clips/s (global batch "
                  f"{tc.batch_size * dist.world}), peak memory "
                  f"{format_bytes(memory_bytes(self.device)[1])} ({memory_kind(self.device)}"
                  f"{who}), {wait.total():.1%} of the step time waiting for data{hint}",
                  flush=True)
        return TrainResult(self.level, self.step, self.run_dir, self.last,
                           seconds, data_wait=wait.total(), bad_videos=bad_videos,
                           stopped_early=stopped_early)

    @staticmethod
    def _say(bar, msg: str) -> None:
        """One line above the progress bar, or printed where there is none."""
        if bar is not None:
            bar.write(msg)
        else:
            print(msg, flush=True)

    def select(self, result: dict | None) -> str | None:
        """After an evaluation, on EVERY process: best.pt if the run's metric (the first in
        `result`) improved, then whether to stop early: --patience evaluations in a row
        without a new best. Rank 0 decides and every process gets its decision; returns
        the one line saying why to stop, or None to go on (the line is rank 0's; the
        others get a short one)."""
        metric, value, lower = run_metric(result) if result is not None else (None, None, True)
        self.save_best(metric, value, lower_is_better=lower)
        if not self.tc.patience:  # the same config on every process: no collective needed
            return None
        stop, note = 0, None
        if self.dist.is_main:
            best = self.ckpts.best()
            stale = evaluations_since_best(self.step, self.eval_every, best, metric)
            if stale >= self.tc.patience:
                stop = 1
                kept = (f"best {best['value']:.4g} at step {best['step']} in "
                        f"{self.ckpts.best_path}" if best is not None and
                        best.get("metric") == metric else "no best yet")
                note = (f"level {self.level}: stopping early at step {self.step}: {metric} has "
                        f"not improved for {stale} evaluations (--patience "
                        f"{self.tc.patience}); {kept}")
        if D.gather_ints([stop], self.dist.world)[0][0]:
            return note or f"level {self.level}: stopping early at step {self.step}"
        return None


class _DataWait:
    """Time blocked on the data loader as a share of step time: overall, since the last
    log line, and over the last steps (the progress bar's moving figure)."""

    def __init__(self, recent_steps: int = 20):
        self.steps = 0
        self.wait = self.compute = 0.0
        self._iw = self._ic = 0.0  # since the last interval() call
        self._recent: deque[tuple[float, float]] = deque(maxlen=recent_steps)

    def add(self, wait_s: float, compute_s: float) -> None:
        self.steps += 1
        self.wait += wait_s
        self.compute += compute_s
        self._iw += wait_s
        self._ic += compute_s
        self._recent.append((wait_s, compute_s))

    @staticmethod
    def _share(w: float, c: float) -> float:
        return w / (w + c) if w + c > 0 else 0.0

    def total(self) -> float:
        return self._share(self.wait, self.compute)

    def recent(self) -> float:
        return self._share(sum(w for w, _ in self._recent), sum(c for _, c in self._recent))

    def interval(self) -> float:
        share = self._share(self._iw, self._ic)
        self._iw = self._ic = 0.0
        return share


def train_level(cfg: CascadeConfig, level: int, data: str | os.PathLike, out: str | os.PathLike,
                prev: str | os.PathLike | None = None, resume: bool = False,
                overwrite: bool = False, device: str | None = None, skip_bad_videos: bool = False,
                progress: bool = True, eval_fn: EvalFn | None = None,
                eval_every: int = 0, split: str | None = None, layout: str = "auto",
                data_backend: str = "auto", dali_only: bool = False,
                tensorboard: bool = True) -> TrainResult:
    """Train one level of `cfg` on the video folder `data`, into the run folder `out`.

    Called by `train/level.py` (under torchrun or alone) and by `cvg demo`. With
    `eval_every` N > 0, `eval_fn(cascade)` runs every N steps and at the end, and its
    numbers go to log.jsonl as {"eval": {"step": ..., name: value, ...}}. split, layout:
    which videos of `data` and their labels (`cvg_fast.data.layouts.detect_layout`).
    `data_backend` ("auto" | "pyav" | "dali") and `dali_only`: see `make_train_loader`.
    `tensorboard`: event files in OUT/level{L}/tb/ (rank 0; `tensorboard_log`).
    """
    from cvg_fast.data import VideoFolder
    from cvg_fast.data.level_views import LevelViews

    cfg.validate()
    dist = D.init_distributed(device)
    out = Path(out)
    top = cfg.levels[-1]
    cache = out / "data_index.json"
    views = LevelViews.for_level(cfg, level)  # decode only the frames this level trains on
    # Rank 0 probes the folder (cached in the run folder) while the others wait on a file,
    # not in a collective that times out (NCCL: 10 minutes) on a large dataset.
    ready = out / f".data_index_ready.{D.launch_token()}"

    def folder(show: bool) -> VideoFolder:
        return VideoFolder(data, clip_frames=top.frames, size=top.size,
                           frame_stride=cfg.frame_stride, skip_bad=skip_bad_videos,
                           index_cache=cache, progress=show, split=split, layout=layout,
                           views=views)

    if dist.is_main:
        from cvg_fast.ops.backends import describe_backends

        if progress:
            print(f"cvg_fast: level {level} of {cfg.name!r} on {dist.device} x{dist.world}; "
                  f"backends: {describe_backends()}", flush=True)
        out.mkdir(parents=True, exist_ok=True)
        try:
            dataset = folder(progress)
        except CvgError as exc:
            if dist.world > 1:
                D.publish(ready, error=str(exc))
            raise
        if dist.world > 1:
            D.publish(ready)
    else:
        D.wait_for(ready, f"indexing {data}")
        dataset = folder(False)
    trainer = LevelTrainer(cfg, level, dataset, out, Path(prev) if prev else None, dist,
                           resume=resume, overwrite=overwrite, progress=progress,
                           eval_fn=eval_fn, eval_every=eval_every,
                           data_backend=data_backend, dali_only=dali_only,
                           tensorboard=tensorboard)
    if dist.is_main:  # every rank has read it: LevelTrainer's broadcasts came after the wait
        ready.unlink(missing_ok=True)
    if dist.is_main and progress:
        print(f"cvg_fast: precision: {trainer.precision.describe()}", flush=True)
        if trainer.grad_sync_mode is not None:
            print(f"cvg_fast: gradient averaging: {trainer.grad_sync_mode} "
                  f"(--grad-sync {cfg.train.grad_sync})", flush=True)
    return trainer.run()
