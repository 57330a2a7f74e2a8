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
                               z_t_dim=cfg.z_t_dim,
                               motion_dim=cfg.motion_dim)
    prev = cfg.levels[level - 2]
    return UpscalerGenerator(prev.size, cfg.t_factor(level), cfg.s_factor(level), lv.g_ch,
                             cfg.z_ch, num_classes)


def build_discriminator(cfg: CascadeConfig, level: int, num_classes: int) -> LevelDiscriminator:
    """Spatial + temporal (+ matching for upscalers unless `matching=False`)."""
    lv = cfg.levels[level - 1]
    in_size = cfg.levels[level - 2].size if level > 1 else None
    return LevelDiscriminator(lv.size, lv.d_ch, lv.d_frames, num_classes, in_size=in_size,
                              matching=lv.matching, temporal_down=lv.temporal_d_down,
                              temporal_inputs=lv.temporal_d_inputs)


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
               overlap: float = 0.0, chunk_frames: int | None = None,
               max_batch: int | None = None,
               window_call: Callable[[int, nn.Module], Callable] | None = None
               ) -> Iterator[torch.Tensor]:
        """Chunks (N, t, 3, H, W) of level `upto`'s video, in order, pulled lazily.

        z: (N, level 1's z_dim). chunk_frames: level 1 runs in chunks of this many frames
        with its ConvGRU states carried (None: all `frames1` at once); each upscaling level
        slides over its input's windows as the frames arrive, so what is resident is one
        chunk per level and the windows in flight. max_batch: rows (videos x window
        positions) per upscaler call (None: one window position at a time); the windows
        are independent, so batching does not change the video. on_window(level, x_window,
        y_window) sees every upscaled window. overlap: the fraction (0 to 0.5) of each
        upscaler's window shared with the next (cut in its middle). window_call(level,
        generator) -> a callable with the generator's signature, run in its place (level 1:
        each chunk; upscalers: each window call), e.g. a CUDA-graphed one.
        """
        if not 0.0 <= overlap <= 0.5:
            raise ValueError(f"overlap must be a fraction in [0, 0.5], got {overlap}")
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        upto = upto or self.num_levels
        c1 = self.level_cfg(1)
        n = z.shape[0]
        if z.shape[-1] != c1.z_dim:
            raise ValueError(f"level 1 takes z of {c1.z_dim} values, got {z.shape[-1]}")
        g1 = self.generators[0]

        def e_fn(t0, t1):
            return noise_fn(1, t0, t1, (c1.z_t_dim,)).to(z.device, z.dtype)

        if chunk_frames is None:
            stream: Iterator[torch.Tensor] = iter(
                [g1(z, y, frames1, e_fn(0, frames1) if c1.z_t_dim else None)])
        else:
            stream = g1.stream(z, y, frames1, chunk_frames, e_fn if c1.z_t_dim else None,
                               call=window_call(1, g1) if window_call is not None else None)
        total = frames1
        for level in range(2, upto + 1):
            gen, lc = self.generators[level - 1], self.level_cfg(level)
            call = window_call(level, gen) if window_call is not None else gen
            rows = max_batch or n

            def upscale(xw, ranges, call=call, level=level, z_ch=lc.z_ch, rows=rows):
                shape = (z_ch, xw.shape[-2], xw.shape[-1])
                noise = torch.cat([noise_fn(level, t0, t1, shape) for t0, t1 in ranges])
                noise = noise.to(xw.device, xw.dtype)
                yy = y.repeat(len(ranges)) if y is not None else None  # position-major rows
                if xw.shape[0] <= rows:
                    return call(xw, noise, yy)
                return torch.cat([call(xw[r: r + rows], noise[r: r + rows],
                                       None if yy is None else yy[r: r + rows])
                                  for r in range(0, xw.shape[0], rows)])

            hook = (lambda a, b, level=level: on_window(level, a, b)) if on_window else None
            w = min(lc.window(level), total)
            stream = stream_upscale(upscale, stream, total, w, self.t_factor(level), hook,
                                    overlap=int(overlap * w), positions=max(1, rows // n))
            total *= self.t_factor(level)
        return stream
