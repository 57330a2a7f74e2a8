"""Residual blocks of the generators (BN, up) and discriminators (no BN, down).

2D blocks act on frames (N, C, H, W) — a video (N, T, C, H, W) is folded to
(N*T, C, H, W) by the caller, never looped over frames; 3D blocks act on clips
(N, C, T, H, W). All convolutions are spectrally normalised (SNConv*d).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cvg_fast.nn.batchnorm import ConditionalBatchNorm
from cvg_fast.nn.spectral_norm import SNConv2d, SNConv3d

_CONV = {2: SNConv2d, 3: SNConv3d}


def _upsample_space(x: torch.Tensor) -> torch.Tensor:
    """Nearest 2x in H and W; T (if any) untouched."""
    if x.dim() == 4:
        return F.interpolate(x, scale_factor=2, mode="nearest")
    return F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest")


def _downsample(x: torch.Tensor) -> torch.Tensor:
    """2x average pool in H, W and (for clips longer than one frame) T.

    Odd T rounds up (ceil mode: the last frame is averaged alone), so every frame
    reaches the score: flooring drops the last frame of 3 (6 -> 3 -> 1 in the
    kinetics600 matching D, leaving it 0.13 of the gradient share the middle frame gets).
    """
    if x.dim() == 4:
        return F.avg_pool2d(x, 2)
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d):
        return _downsample_clip_channels_last(x)
    kt = 2 if x.shape[2] >= 2 else 1
    return F.avg_pool3d(x, (kt, 2, 2), ceil_mode=True)


def _downsample_clip_channels_last(x: torch.Tensor) -> torch.Tensor:
    """`_downsample` of a channels_last_3d clip, keeping that layout.

    avg_pool3d returns a contiguous result for channels_last_3d input (torch 2.14, CPU),
    which the next conv would copy back: pool H, W on the (N*T, C, H, W) channels_last
    view, then average frame pairs (an odd last frame alone, as ceil mode does).
    """
    n, c, t, h, w = x.shape
    frames = x.transpose(1, 2).reshape(n * t, c, h, w)  # a view: channels_last frames
    p = F.avg_pool2d(frames, 2).view(n, t, c, h // 2, w // 2)
    if t >= 2:
        pairs = (p[:, 0:t - 1:2] + p[:, 1::2]) * 0.5
        if t % 2:  # cat in (N, T, H, W, C) order: the result keeps the layout
            last = p[:, -1:].permute(0, 1, 3, 4, 2)
            p = torch.cat([pairs.permute(0, 1, 3, 4, 2), last], 1).permute(0, 1, 4, 2, 3)
        else:
            p = pairs
    return p.transpose(1, 2)


class GBlock(nn.Module):
    """Generator block: BN-ReLU-(up)-conv-BN-ReLU-conv + (up)-1x1 skip.

    dims=2: (N, C, H, W); dims=3: (N, C, T, H, W). `up` doubles H and W.
    BN is class-conditional when num_classes > 0 (y: (N,) labels).
    """

    def __init__(self, in_ch: int, out_ch: int, dims: int = 2, up: bool = False,
                 num_classes: int = 0):
        super().__init__()
        conv = _CONV[dims]
        self.up = up
        self.bn1 = ConditionalBatchNorm(in_ch, num_classes)
        self.conv1 = conv(in_ch, out_ch, 3, padding=1)
        self.bn2 = ConditionalBatchNorm(out_ch, num_classes)
        self.conv2 = conv(out_ch, out_ch, 3, padding=1)
        self.skip = conv(in_ch, out_ch, 1) if (in_ch != out_ch or up) else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        # BN's output is a fresh tensor: without autograd, ReLU may overwrite it
        inplace = not torch.is_grad_enabled()
        h = F.relu(self.bn1(x, y), inplace=inplace)
        if self.up:
            h = _upsample_space(h)
        h = self.conv1(h)
        h = self.conv2(F.relu(self.bn2(h, y), inplace=inplace))
        if torch.is_inference_mode_enabled():
            # sampling: a 1x1 conv commutes with nearest upsampling (the same value at each
            # copied pixel): skip first, on 4x fewer pixels, then upsample out_ch channels.
            # Exact math, other float rounding: training keeps the order it was measured
            # with (a GAN run diverges from any rounding change, see README "Generation")
            if self.skip is not None:
                x = self.skip(x)
            return (_upsample_space(x) if self.up else x) + h
        if self.up:
            x = _upsample_space(x)
        if self.skip is not None:
            x = self.skip(x)
        return x + h


class DBlock(nn.Module):
    """Discriminator block: (ReLU)-conv-ReLU-conv-(down) + 1x1-(down) skip, no BN.

    dims=2: (N, C, H, W); dims=3: (N, C, T, H, W). The first block of a
    discriminator skips the leading ReLU (it sees pixels).
    """

    def __init__(self, in_ch: int, out_ch: int, dims: int = 2, down: bool = True,
                 first: bool = False):
        super().__init__()
        conv = _CONV[dims]
        self.down = down
        self.first = first
        self.conv1 = conv(in_ch, out_ch, 3, padding=1)
        self.conv2 = conv(out_ch, out_ch, 3, padding=1)
        self.skip = conv(in_ch, out_ch, 1) if (in_ch != out_ch or down) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.down:
            h = _downsample(h)
        if self.first:  # pool first: the 1x1 conv then runs on 4x fewer pixels
            x = _downsample(x) if self.down else x
            x = self.skip(x) if self.skip is not None else x
        else:
            x = self.skip(x) if self.skip is not None else x
            x = _downsample(x) if self.down else x
        return x + h
