"""Dataclass presets for a cascade: the paper's three setups plus `tiny` for a CPU.

A cascade is a list of levels. Level 1 makes `frames` frames at `size` x `size`
from noise; level l > 1 multiplies the frame count by
`t_factor = frames_l / frames_{l-1}` and the side by
`s_factor = size_l / size_{l-1}` (a power of two). Upscalers are trained on
temporal windows of `window` *input* frames (0 = the whole input), so at
inference they slide over videos of any length.

The data pyramid is defined from the top level: the real clip is
`levels[-1].frames` frames at `levels[-1].size`, taken every `frame_stride`
source frames; x^{l-1} = f_t(f_s^k(x^l)) (see `cvg_fast.ops.pyramid`).

Everything here is plain data (JSON-able), saved next to every checkpoint so
a run can be reproduced and reloaded from its folder.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from cvg_fast.errors import CvgError


@dataclass
class LevelConfig:
    """One level of the cascade (shapes and widths)."""

    frames: int  # frames of this level's full video at the training horizon
    size: int  # height = width of this level's frames
    g_ch: int = 32  # generator base width
    d_ch: int = 32  # discriminator base width
    window: int = 0  # upscalers: input frames per training window (0 = whole input)
    d_frames: int = 8  # k frames judged by the spatial discriminator
    matching: bool = True  # upscalers: use the matching discriminator ("No MD" = False)
    temporal_d_down: int = 2  # spatial downsampling before the temporal D (1 = none)
    # what the temporal D sees (models.discriminators.TEMPORAL_D_INPUTS): "frames" (the
    # paper's) | "frames+diff" (ours: plus the frame differences, so stillness shows)
    temporal_d_inputs: str = "frames"


@dataclass
class TrainConfig:
    """Options of one level's GAN training run."""

    steps: int = 1000
    batch_size: int = 8  # per process
    lr_g: float = 1e-4
    lr_d: float = 5e-4
    beta1: float = 0.0
    beta2: float = 0.999
    loss: str = "hinge"  # "hinge" | "ns" (non-saturating, eq. 2/3)
    d_steps: int = 1  # discriminator updates per generator update
    seed: int = 0
    checkpoint_every: int = 500
    # step-numbered checkpoints kept in OUT/level{L}/checkpoints/ (the newest is also
    # OUT/level{L}/checkpoint.pt); a damaged newest file falls back to the previous one
    keep_checkpoints: int = 3
    # skipped (NaN/inf) steps in a row before rolling back to the last checkpoint
    max_nonfinite_steps: int = 5
    sample_every: int = 500
    log_every: int = 10
    num_workers: int = 2
    # "auto" (bf16 where the device computes it natively: AVX512-BF16/AMX CPUs, Ampere+
    # GPUs; else fp32) | "none" (fp32) | "bf16" (autocast on the device); cvg_fast.nn.precision
    amp: str = "auto"
    # activations in (N, T, H, W, C) order (cvg_fast.nn.layout); None = the device's fastest
    channels_last: bool | None = None
    bn_recalibration_batches: int = 8  # standing BN statistics written with each checkpoint
    # level 1: unroll up to this many extra frames and show D only the last T, so the
    # ConvGRU learns to keep moving past its horizon (0 = the paper's plain T-frame unroll)
    rollout_offset: int = 0
    # level 1, truncated backpropagation through time: each G/D sample starts its T-frame
    # window at a random frame s in [0, tbptt_horizon] of a longer rollout; frames 0..s-1
    # run without grad (in T-frame chunks, so memory stays that of the window) and only give
    # the ConvGRU states, detached, from which the T frames run with grad. D (the temporal D
    # included) judges that window: G learns on states far past frame 0 at the cost of a
    # no-grad prefix, where rollout_offset backpropagates through all T + k frames. Window
    # starts are keyed without the rank (every process runs the same number of chunks, as
    # its synchronised BN needs). 0 = off; ours, not the paper's; exclusive with
    # rollout_offset; upscalers ignore it.
    tbptt_horizon: int = 0
    # upscalers: the frozen levels below make this many MORE level-1 frames than the
    # training length, and the upscaler's input windows are drawn from that whole longer
    # video, so it learns on what it slides over past the horizon at inference (0 = windows
    # within the training length only). Ours, not the paper's; level 1 ignores it.
    input_rollout: int = 0
    # exponential moving average of G's weights (cvg_fast.training.ema), ramped up as
    # min(ema_decay, (1 + t) / (10 + t)); samples, evaluation and the generator that
    # generate / eval / the next level load use it. 0 = off (the raw G everywhere)
    ema_decay: float = 0.999
    # with --eval-every: stop after this many evaluations in a row without a new best
    # (best.pt); 0 = never stop early
    patience: int = 0
    # gradient averaging across processes: "overlap" (bucketed all-reduces started from
    # hooks while backward runs; cvg_fast.training.grad_sync) | "flat" (one all-reduce per
    # network after backward) | "auto" (overlap on CUDA, flat on CPU, where overlap
    # measured no gain). The same averages either way
    grad_sync: str = "auto"


@dataclass
class CascadeConfig:
    """A whole cascade: levels, conditioning, data and training options."""

    name: str
    levels: list[LevelConfig]
    num_classes: int = -1  # -1: number of class folders in the data (0 = unconditional)
    z_dim: int = 64  # level-1 noise per video
    z_ch: int = 4  # upscaler noise channels per input pixel
    # level-1 noise per frame: OUR addition, not the paper's. It keeps the ConvGRU moving
    # past its training horizon (a constant input settles it to a fixed point); 0 = the
    # paper's generator (one z per video)
    z_t_dim: int = 16
    # level 1's motion sinusoids per frame (OURS; 0 = the paper's generator): M sinusoids of
    # the frame index with per-video frequencies and phases from the video's code, fed with
    # every frame's input, so motion never settles (models.generators.Level1Generator)
    motion_dim: int = 0
    frame_stride: int = 1  # take every n-th source frame
    fps: int = 8  # frame rate of written videos
    train: TrainConfig = field(default_factory=TrainConfig)

    # ----------------------------------------------------------------- derived
    def t_factor(self, level: int) -> int:
        """Temporal upsampling of `level` (1-based) over the level below."""
        if level == 1:
            return 1
        return self.levels[level - 1].frames // self.levels[level - 2].frames

    def s_factor(self, level: int) -> int:
        """Spatial upsampling of `level` (1-based) over the level below."""
        if level == 1:
            return 1
        return self.levels[level - 1].size // self.levels[level - 2].size

    def window(self, level: int) -> int:
        """Training window of an upscaler, in input frames (resolved from 0)."""
        lv = self.levels[level - 1]
        prev = self.levels[level - 2].frames
        return prev if lv.window <= 0 else min(lv.window, prev)

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    # --------------------------------------------------------------- checking
    def validate(self) -> "CascadeConfig":
        if not self.levels:
            raise CvgError(f"preset {self.name!r} has no levels")
        for i, lv in enumerate(self.levels, start=1):
            if lv.frames < 1 or lv.size < 4:
                raise CvgError(f"level {i}: frames must be >= 1 and size >= 4 (got {lv.frames}, {lv.size})")
            if lv.size & (lv.size - 1):
                raise CvgError(f"level {i}: size {lv.size} is not a power of two")
            if i > 1:
                prev = self.levels[i - 2]
                if lv.frames % prev.frames or lv.size % prev.size:
                    raise CvgError(
                        f"level {i}: frames/size ({lv.frames}/{lv.size}) must be multiples of "
                        f"level {i - 1}'s ({prev.frames}/{prev.size})"
                    )
                sf = lv.size // prev.size
                if sf & (sf - 1):
                    raise CvgError(f"level {i}: spatial factor {sf} is not a power of two")
        if self.train.loss not in ("hinge", "ns"):
            raise CvgError(f"unknown loss {self.train.loss!r}: use 'hinge' or 'ns'")
        if self.train.amp not in ("auto", "none", "bf16"):
            raise CvgError(f"unknown amp mode {self.train.amp!r}: use 'auto', 'none' or 'bf16'")
        if self.train.input_rollout < 0 or self.train.rollout_offset < 0:
            raise CvgError(f"input_rollout and rollout_offset must be >= 0 (got "
                           f"{self.train.input_rollout}, {self.train.rollout_offset})")
        if self.train.keep_checkpoints < 1 or self.train.max_nonfinite_steps < 1:
            raise CvgError(f"keep_checkpoints and max_nonfinite_steps must be >= 1 (got "
                           f"{self.train.keep_checkpoints}, {self.train.max_nonfinite_steps})")
        if not 0.0 <= self.train.ema_decay < 1.0:
            raise CvgError(f"ema_decay must be in [0, 1) (got {self.train.ema_decay}): 0 turns "
                           f"the EMA of G off, 0.999 is the paper presets' value")
        if self.train.grad_sync not in ("auto", "overlap", "flat"):
            raise CvgError(f"grad_sync must be 'auto', 'overlap' or 'flat' (got "
                           f"{self.train.grad_sync!r})")
        if self.train.patience < 0:
            raise CvgError(f"patience must be >= 0 (got {self.train.patience}; 0 = never stop "
                           f"early)")
        h = self.train.tbptt_horizon
        if not isinstance(h, int) or isinstance(h, bool) or h < 0:
            raise CvgError(f"tbptt_horizon must be an integer >= 0 (got {h!r})")
        if h and self.train.rollout_offset:
            raise CvgError(f"tbptt_horizon ({h}) and rollout_offset "
                           f"({self.train.rollout_offset}) are two ways to train level 1 past "
                           f"its horizon: set one of them to 0")
        if any(lv.temporal_d_inputs not in ("frames", "frames+diff") for lv in self.levels):
            raise CvgError(f"temporal_d_inputs must be 'frames' or 'frames+diff', got "
                           f"{[lv.temporal_d_inputs for lv in self.levels]}")
        if self.motion_dim < 0:
            raise CvgError(f"motion_dim must be >= 0 (got {self.motion_dim}; 0 = off)")
        if self.frame_stride < 1:
            raise CvgError(f"frame_stride must be >= 1 (got {self.frame_stride})")
        return self

    # ------------------------------------------------------------ (de)serial
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "CascadeConfig":
        d = dict(d)
        levels = [LevelConfig(**lv) for lv in d.pop("levels")]
        train = TrainConfig(**d.pop("train", {}))
        return CascadeConfig(levels=levels, train=train, **d).validate()

    def copy(self) -> "CascadeConfig":
        return CascadeConfig.from_dict(self.to_dict())

    def shrunk(self, size_div: int = 1, width_div: int = 1) -> "CascadeConfig":
        """Same structure (levels, factors, windows) at smaller sizes/widths, for tests."""
        c = self.copy()
        for lv in c.levels:
            lv.size = max(4, lv.size // size_div)
            lv.g_ch = max(4, lv.g_ch // width_div)
            lv.d_ch = max(4, lv.d_ch // width_div)
        return c.validate()


def _ucf101() -> CascadeConfig:
    return CascadeConfig(
        name="ucf101",
        levels=[
            LevelConfig(frames=8, size=64, g_ch=64, d_ch=64, d_frames=8),
            LevelConfig(frames=16, size=128, g_ch=32, d_ch=32, window=0, d_frames=8),
        ],
        num_classes=-1,
        z_dim=128,
        fps=25,
        train=TrainConfig(steps=100_000, batch_size=16, checkpoint_every=2000, sample_every=2000),
    )


def _kinetics600() -> CascadeConfig:
    return CascadeConfig(
        name="kinetics600",
        levels=[
            LevelConfig(frames=24, size=32, g_ch=64, d_ch=64, d_frames=8),
            LevelConfig(frames=48, size=128, g_ch=32, d_ch=32, window=6, d_frames=8),
        ],
        num_classes=600,  # class-conditional on Kinetics-600's classes
        z_dim=128,
        frame_stride=2,  # the 48 frames are every 2nd source frame
        fps=25,
        train=TrainConfig(steps=300_000, batch_size=16, checkpoint_every=2000, sample_every=2000),
    )


def _bdd100k() -> CascadeConfig:
    return CascadeConfig(
        name="bdd100k",
        levels=[
            LevelConfig(frames=12, size=64, g_ch=64, d_ch=64, d_frames=8),
            LevelConfig(frames=24, size=128, g_ch=32, d_ch=32, window=12, d_frames=8),
            LevelConfig(frames=48, size=256, g_ch=16, d_ch=16, window=12, d_frames=4),
        ],
        num_classes=0,
        z_dim=128,
        frame_stride=2,  # the 48 frames are every 2nd source frame
        fps=30,
        train=TrainConfig(steps=100_000, batch_size=8, checkpoint_every=2000, sample_every=2000),
    )


def _tiny() -> CascadeConfig:
    return CascadeConfig(
        name="tiny",
        levels=[
            # level 1 keeps moving past its horizon (README, "Motion"): its temporal D sees
            # full-size frames and their differences, and it trains with TBPTT (below)
            LevelConfig(frames=8, size=16, g_ch=32, d_ch=32, d_frames=4, temporal_d_down=1,
                        temporal_d_inputs="frames+diff"),
            LevelConfig(frames=16, size=32, g_ch=16, d_ch=16, window=4, d_frames=4),
        ],
        num_classes=-1,
        z_dim=32,
        z_ch=2,
        z_t_dim=8,
        motion_dim=4,
        fps=8,
        # rates doubled from the paper's (G 1e-4, D 5e-4 -> 2e-4, 4e-4): measured to give
        # steadier shapes within the CPU demo's few hundred steps
        # input_rollout 24: level 2 trains on windows of 32-frame level-1 videos (the demo
        # generates 4x the training length); measured in the README's "Upscalers"
        # tbptt_horizon 24, motion_dim 4, level 1's temporal D on full-size frames + their
        # differences: measured to keep level 1 moving to 16x its length (README, "Motion");
        # each alone did not
        # ema_decay 0: the demo samples the raw G until FVD-synth shows that an EMA helps
        # within 600 steps (with the ramp, 0.99 would average about the last 100 steps)
        train=TrainConfig(
            steps=600, batch_size=16, lr_g=2e-4, lr_d=4e-4, checkpoint_every=300,
            sample_every=300, num_workers=1, bn_recalibration_batches=4, input_rollout=24,
            ema_decay=0.0, tbptt_horizon=24,
        ),
    )


PRESETS = {"ucf101": _ucf101, "kinetics600": _kinetics600, "bdd100k": _bdd100k, "tiny": _tiny}


def get_preset(name: str) -> CascadeConfig:
    """A fresh copy of a named preset; unknown names are a one-line CvgError."""
    if name not in PRESETS:
        raise CvgError(f"unknown preset {name!r}: choose one of {', '.join(sorted(PRESETS))}")
    return PRESETS[name]().validate()


def log2_int(n: int) -> int:
    return int(round(math.log2(n)))
