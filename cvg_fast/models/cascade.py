"""Building a level's networks from a config, and the Cascade of trained levels.

A Cascade holds the generators of levels 1..L and the CascadeConfig each was
trained with. It is what `load_cascade(run_dir)` returns and what training of
level L+1 freezes.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
import torch.nn as nn

from cvg_fast.config import CascadeConfig
from cvg_fast.errors import CvgError
from cvg_fast.models.discriminators import LevelDiscriminator
from cvg_fast.models.generators import Level1Generator, UpscalerGenerator
from cvg_fast.models.windows import stream_upscale

# noise_fn(level, t0, t1, shape) -> (N, t1 - t0, *shape): noise of output frames t0..t1
NoiseFn = Callable[[int, int, int, tuple], torch.Tensor]


def build_generator(cfg: CascadeConfig, level: int, num_classes: int) -> nn.Module:
    """Generator of `level` (1-based) as the config describes it."""
    lv = cfg.levels[level - 1]
    if level == 1:
        return Level1Generator(lv.frames, lv.size, lv.g_ch, cfg.z_dim, num_classes,
                               z_t_dim=cfg.z_t_dim)
    prev = cfg.levels[level - 2]
    return UpscalerGenerator(prev.size, cfg.t_factor(level), cfg.s_factor(level), lv.g_ch,
                             cfg.z_ch, num_classes)


def build_discriminator(cfg: CascadeConfig, level: int, num_classes: int) -> LevelDiscriminator:
    """Spatial + temporal (+ matching for upscalers unless `matching=False`)."""
    lv = cfg.levels[level - 1]
    in_size = cfg.levels[level - 2].size if level > 1 else None
    return LevelDiscriminator(lv.size, lv.d_ch, lv.d_frames, num_classes, in_size=in_size,
                              matching=lv.matching, temporal_down=lv.temporal_d_down)


def check_levels_agree(cfgs: list[CascadeConfig], classes: list[int], where: str = "") -> None:
    """One-line CvgError unless level l's config agrees with the configs of the levels below.

    cfgs[l-1] is the config level l was trained with. What must agree: the frames and size
    each level makes (level l was trained on level l-1's output), the frame stride of the
    data (it sets how fast things move) and the classes. Everything else (z sizes,
    windows, widths) is each level's own business and is read from its own config.
    """
    at = f"{where}: " if where else ""
    for level in range(2, len(cfgs) + 1):
        mine = cfgs[level - 1]
        for lower in range(1, level):
            a, b = cfgs[lower - 1].levels[lower - 1], mine.levels[lower - 1]
            if (a.frames, a.size) != (b.frames, b.size):
                raise CvgError(f"{at}level {lower} makes {a.frames} frames at {a.size}px but level "
                               f"{level} was trained on {b.frames} frames at {b.size}px from it: "
                               f"retrain level {level} on this level {lower}")
        if mine.frame_stride != cfgs[0].frame_stride:
            raise CvgError(f"{at}level {level} was trained with frame stride "
                           f"{mine.frame_stride} but level 1 with {cfgs[0].frame_stride}: every "
                           f"level must see the data at the same frame rate")
    for level, nc in enumerate(classes, start=1):
        if nc != classes[0]:
            raise CvgError(f"{at}level {level} has {nc} classes but level 1 has {classes[0]}: "
                           f"train every level on the same classes")


class Cascade(nn.Module):
    """Trained generators of levels 1..L (eval mode, no grad) and their configs.

    cfgs[l-1] is the config level l was trained with: level l is built and driven
    (noise sizes, window, factors) from it alone, so an override used when training
    one level never changes another. `cfg` is the top level's config.
    """

    def __init__(self, cfgs: list[CascadeConfig] | CascadeConfig, generators: list[nn.Module],
                 num_classes: int):
        super().__init__()
        if isinstance(cfgs, CascadeConfig):
            cfgs = [cfgs] * len(generators)
        if len(cfgs) != len(generators):
            raise ValueError(f"{len(generators)} generators but {len(cfgs)} configs")
        self.cfgs = list(cfgs)
        self.num_classes = num_classes
        self.generators = nn.ModuleList(generators)

    @property
    def cfg(self) -> CascadeConfig:
        return self.cfgs[-1]

    @property
    def num_levels(self) -> int:
        return len(self.generators)

    def level_cfg(self, level: int) -> CascadeConfig:
        """The config level `level` (1-based) was trained with."""
        return self.cfgs[level - 1]

    def truncated(self, levels: int) -> "Cascade":
        """Levels 1..`levels` only."""
        return Cascade(self.cfgs[:levels], list(self.generators)[:levels], self.num_classes)

    @property
    def size(self) -> int:
        return self.cfg.levels[self.num_levels - 1].size

    def t_factor(self, level: int) -> int:
        return self.level_cfg(level).t_factor(level) if level > 1 else 1

    def total_t_factor(self, upto: int | None = None) -> int:
        """Frames of level `upto` per level-1 frame."""
        f = 1
        for level in range(2, (upto or self.num_levels) + 1):
            f *= self.t_factor(level)
        return f

    def stream(self, z: torch.Tensor, y: torch.Tensor | None, frames1: int, noise_fn: NoiseFn,
               upto: int | None = None,
               on_window: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
               overlap: float = 0.0) -> Iterator[torch.Tensor]:
        """Chunks (N, t, 3, H, W) of level `upto`'s video, in order.

        z: (N, level 1's z_dim). Level 1 makes all `frames1` frames at once (it is small
        and resident); each upscaling level slides over its input's windows and streams.
        on_window(level, x_window, y_window) sees every upscaled window. overlap: the
        fraction (0 to 0.5) of each upscaler's window shared with the next (cut in its middle).
        """
        if not 0.0 <= overlap <= 0.5:
            raise ValueError(f"overlap must be a fraction in [0, 0.5], got {overlap}")
        upto = upto or self.num_levels
        c1 = self.level_cfg(1)
        if z.shape[-1] != c1.z_dim:
            raise ValueError(f"level 1 takes z of {c1.z_dim} values, got {z.shape[-1]}")
        e = noise_fn(1, 0, frames1, (c1.z_t_dim,)).to(z.device, z.dtype) if c1.z_t_dim else None
        stream: Iterator[torch.Tensor] = iter([self.generators[0](z, y, frames1, e)])
        total = frames1
        for level in range(2, upto + 1):
            gen, lc = self.generators[level - 1], self.level_cfg(level)

            def upscale(xw, t0, t1, gen=gen, level=level, z_ch=lc.z_ch):
                noise = noise_fn(level, t0, t1, (z_ch, xw.shape[-2], xw.shape[-1]))
                return gen(xw, noise.to(xw.device, xw.dtype), y)

            hook = (lambda a, b, level=level: on_window(level, a, b)) if on_window else None
            w = min(lc.window(level), total)
            stream = stream_upscale(upscale, stream, total, w, self.t_factor(level), hook,
                                    overlap=int(overlap * w))
            total *= self.t_factor(level)
        return stream
