"""Spatial, temporal and matching discriminators (spectral norm, projection classes).

Spatial D: k frames per video, drawn WITHOUT replacement, each judged alone at
full resolution by 2D residual blocks -> scores (N, k).
Temporal D: the whole clip, downsampled 2x in space (f_s), judged by 3D blocks
-> (N,). Matching D: (output downsampled to the input's size, input) stacked
on channels (6), same 3D architecture -> (N,); without it ("No MD") upscalers
drift from their input.
Class conditioning is by projection (Miyato & Koyama): score += <embed(y), h>.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from cvg_fast.models.noise import BatchRandom
from cvg_fast.nn import DBlock, SNEmbedding, SNLinear, spectral_norm_step
from cvg_fast.nn.layout import cat_channels, clip_channels_last, frames_channels_last
from cvg_fast.ops import downsample_to, spatial_down_levels


class _ResNetD(nn.Module):
    """Residual D body + projection head. (B, C, [T,] S, S) -> (B,)."""

    def __init__(self, in_ch: int, size: int, ch: int, dims: int, num_classes: int):
        super().__init__()
        n_down = max(int(round(math.log2(max(size, 4) // 4))), 1)
        widths = [ch * min(2 ** k, 16) for k in range(n_down + 1)]
        blocks = [DBlock(in_ch, widths[0], dims=dims, down=True, first=True)]
        blocks += [DBlock(widths[k], widths[k + 1], dims=dims, down=k + 1 < n_down)
                   for k in range(n_down)]
        self.blocks = nn.Sequential(*blocks)
        self.linear = SNLinear(widths[-1], 1)
        self.embed = SNEmbedding(num_classes, widths[-1]) if num_classes > 0 else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = F.relu(self.blocks(x))
        h = h.sum(dim=tuple(range(2, h.dim())))
        out = self.linear(h).squeeze(1)
        if self.embed is not None:
            if y is None:
                raise ValueError("class-conditional discriminator: pass labels y")
            out = out + (self.embed(y) * h).sum(1)
        return out


class SpatialDiscriminator(nn.Module):
    """Video (N, T, 3, S, S) -> (N, k) scores of k random distinct frames per video."""

    def __init__(self, size: int, ch: int, k: int, num_classes: int = 0, img_ch: int = 3):
        super().__init__()
        self.k = k
        self.net = _ResNetD(img_ch, size, ch, dims=2, num_classes=num_classes)
        self.channels_last = False  # judge frames in channels_last (cvg_fast.nn.layout)

    @staticmethod
    def sample_frames(n: int, t: int, k: int, generator: torch.Generator | BatchRandom | None,
                      device: torch.device) -> torch.Tensor:
        """(N, min(k, T)) frame indices, distinct within each row (a BatchRandom: row i's
        from its sample's generator)."""
        if isinstance(generator, BatchRandom):
            keys = generator.rand(n, t)
        else:
            keys = torch.rand(n, t, generator=generator,
                              device=generator.device if generator is not None else device)
        return keys.argsort(dim=1)[:, : min(k, t)].to(device)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None,
                generator: torch.Generator | BatchRandom | None = None) -> torch.Tensor:
        n, t = x.shape[:2]
        idx = self.sample_frames(n, t, self.k, generator, x.device)
        k = idx.shape[1]
        frames = torch.gather(x, 1, idx.view(n, k, 1, 1, 1).expand(n, k, *x.shape[2:]))
        yy = y.repeat_interleave(k) if y is not None else None
        frames = frames.reshape(n * k, *x.shape[2:])
        if self.channels_last:
            frames = frames_channels_last(frames)
        with spectral_norm_step(self):
            return self.net(frames, yy).view(n, k)


# What the temporal D sees. "frames" (the paper's): the clip. "frames+diff" (ours): the clip
# and its frame differences x_t - x_{t-1} (0 at the first frame) on 3 more channels, so a
# clip that stops moving is plain to see: with "frames", level 1's temporal D let G settle
# to a still image a few frames in and stay there (README, "Motion").
TEMPORAL_D_INPUTS = ("frames", "frames+diff")


class TemporalDiscriminator(nn.Module):
    """Video (N, T, C, S, S) -> (N,); downsamples `downsample`x in space first (paper: 2)."""

    def __init__(self, size: int, ch: int, num_classes: int = 0, in_ch: int = 3,
                 downsample: int = 2, inputs: str = "frames"):
        super().__init__()
        if downsample < 1 or downsample & (downsample - 1):
            raise ValueError(f"temporal D downsampling must be a power of two, got {downsample}")
        if inputs not in TEMPORAL_D_INPUTS:
            raise ValueError(f"temporal D inputs must be one of {', '.join(TEMPORAL_D_INPUTS)}, "
                             f"got {inputs!r}")
        self.downsample, self.diff = downsample, inputs == "frames+diff"
        self.net = _ResNetD(in_ch * (2 if self.diff else 1), size // downsample, ch, dims=3,
                            num_classes=num_classes)
        self.channels_last = False  # judge clips in channels_last_3d (cvg_fast.nn.layout)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x = spatial_down_levels(x, self.downsample.bit_length() - 1)
        if self.diff:
            d = torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], dim=1)
            x = torch.cat([x, d], dim=2)
        clip = x.transpose(1, 2)
        if self.channels_last:
            clip = clip_channels_last(clip)
        with spectral_norm_step(self):
            return self.net(clip, y)


class MatchingDiscriminator(nn.Module):
    """(x^l (N, T, 3, S, S), x^{l-1} (N, T', 3, s, s)) -> (N,): does the output match its input?"""

    def __init__(self, in_size: int, ch: int, num_classes: int = 0, img_ch: int = 3):
        super().__init__()
        self.core = TemporalDiscriminator(in_size, ch, num_classes, in_ch=2 * img_ch,
                                          downsample=1)

    @staticmethod
    def pair(x_high: torch.Tensor, x_low: torch.Tensor) -> torch.Tensor:
        """(downsample(x_high) to x_low's shape, x_low) concatenated on channels."""
        down = downsample_to(x_high, x_low.shape[1], x_low.shape[-1])
        if down.is_contiguous() and x_low.is_contiguous():
            return torch.cat([down, x_low], dim=2)
        return cat_channels([down, x_low])

    def forward(self, x_high: torch.Tensor, x_low: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        return self.core(self.pair(x_high, x_low), y)


class LevelDiscriminator(nn.Module):
    """All discriminators of one level; returns {"spatial": (N, k), "temporal": (N,), ...}.

    Level 1: spatial + temporal. Upscaling levels add matching (unless disabled).
    """

    def __init__(self, size: int, ch: int, k: int, num_classes: int = 0,
                 in_size: int | None = None, matching: bool = True, temporal_down: int = 2,
                 temporal_inputs: str = "frames"):
        super().__init__()
        self.spatial = SpatialDiscriminator(size, ch, k, num_classes)
        self.temporal = TemporalDiscriminator(size, ch, num_classes, downsample=temporal_down,
                                              inputs=temporal_inputs)
        self.matching = (MatchingDiscriminator(in_size, ch, num_classes)
                         if (in_size is not None and matching) else None)

    def forward(self, x: torch.Tensor, x_low: torch.Tensor | None = None,
                y: torch.Tensor | None = None,
                generator: torch.Generator | BatchRandom | None = None) -> dict[str, torch.Tensor]:
        scores = {"spatial": self.spatial(x, y, generator), "temporal": self.temporal(x, y)}
        if self.matching is not None:
            if x_low is None:
                raise ValueError("the matching discriminator needs the low-resolution input")
            scores["matching"] = self.matching(x, x_low, y)
        return scores
