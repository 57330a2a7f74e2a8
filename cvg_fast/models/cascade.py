"""Building a level's networks from a config, and the Cascade of trained levels.

A Cascade holds the generators of levels 1..L and their CascadeConfig. It is
what `load_cascade(run_dir)` returns and what training of level L+1 freezes.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
import torch.nn as nn

from cvg_fast.config import CascadeConfig
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


class Cascade(nn.Module):
    """Trained generators of levels 1..L (eval mode, no grad) and their config."""

    def __init__(self, cfg: CascadeConfig, generators: list[nn.Module], num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.generators = nn.ModuleList(generators)

    @property
    def num_levels(self) -> int:
        return len(self.generators)

    @property
    def size(self) -> int:
        return self.cfg.levels[self.num_levels - 1].size

    def total_t_factor(self, upto: int | None = None) -> int:
        """Frames of level `upto` per level-1 frame."""
        f = 1
        for level in range(2, (upto or self.num_levels) + 1):
            f *= self.cfg.t_factor(level)
        return f

    def stream(self, z: torch.Tensor, y: torch.Tensor | None, frames1: int, noise_fn: NoiseFn,
               upto: int | None = None,
               on_window: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
               overlap: float = 0.0) -> Iterator[torch.Tensor]:
        """Chunks (N, t, 3, H, W) of level `upto`'s video, in order.

        Level 1 makes all `frames1` frames at once (it is small and resident);
        each upscaling level slides over its input's windows and streams.
        on_window(level, x_window, y_window) sees every upscaled window. overlap: the
        fraction (0 to 0.5) of each upscaler's window shared with the next, cross-faded.
        """
        if not 0.0 <= overlap <= 0.5:
            raise ValueError(f"overlap must be a fraction in [0, 0.5], got {overlap}")
        upto = upto or self.num_levels
        cfg = self.cfg
        e = noise_fn(1, 0, frames1, (cfg.z_t_dim,)).to(z.device, z.dtype) if cfg.z_t_dim else None
        stream: Iterator[torch.Tensor] = iter([self.generators[0](z, y, frames1, e)])
        total = frames1
        for level in range(2, upto + 1):
            gen = self.generators[level - 1]

            def upscale(xw, t0, t1, gen=gen, level=level):
                noise = noise_fn(level, t0, t1, (cfg.z_ch, xw.shape[-2], xw.shape[-1]))
                return gen(xw, noise.to(xw.device, xw.dtype), y)

            hook = (lambda a, b, level=level: on_window(level, a, b)) if on_window else None
            w = min(cfg.window(level), total)
            stream = stream_upscale(upscale, stream, total, w, cfg.t_factor(level), hook,
                                    overlap=int(overlap * w))
            total *= cfg.t_factor(level)
        return stream
