"""Memory layout of activations: one channels-last order for frames, clips and videos.

Why: convolutions are ~80% of a CPU training step, and oneDNN (CPU) and cuDNN (GPU)
run them fastest with channels innermost (NOTES.md: bf16 channels-last 1.1-1.5x bf16
contiguous on this CPU). The cascade moves between three views of one video:

    video  (N, T, C, H, W)   what generators return and discriminators take
    frames (N*T, C, H, W)    2D blocks (ConvGRU convs, 2D ResBlocks, spatial D)
    clip   (N, C, T, H, W)   3D blocks (upscaler 3D units, temporal and matching D)

With the memory order (N, T, H, W, C) all three are views of the same storage:
frames are `channels_last`, clips `channels_last_3d`, and the folds between them
(`reshape`, `transpose(1, 2)`) copy nothing. So the models convert to that order once
where a video enters (the generator's first map, a discriminator's input) and the
convs, BN, ReLU, pooling and nearest up-sampling keep it from there.

A model follows the order when its `channels_last` attribute is True; set it on a
whole model (every submodule that has the attribute) with `set_channels_last`.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = [
    "frames_channels_last", "is_video_channels_last", "set_channels_last", "uses_channels_last",
    "video_channels_last", "clip_channels_last", "layout_name", "cat_channels",
]


def is_video_channels_last(x: torch.Tensor) -> bool:
    """True if the (N, T, C, H, W) tensor x is stored in (N, T, H, W, C) order."""
    return x.dim() == 5 and x.permute(0, 1, 3, 4, 2).is_contiguous()


def video_channels_last(x: torch.Tensor) -> torch.Tensor:
    """(N, T, C, H, W) stored (N, T, H, W, C); x itself when it already is (no copy)."""
    if x.dim() != 5:
        raise ValueError(f"expected a video (N, T, C, H, W), got shape {tuple(x.shape)}")
    if is_video_channels_last(x):
        return x
    return x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)


def frames_channels_last(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) in torch.channels_last (no copy when it already is)."""
    return x.contiguous(memory_format=torch.channels_last)


def clip_channels_last(x: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W) in torch.channels_last_3d (no copy when it already is)."""
    return x.contiguous(memory_format=torch.channels_last_3d)


def cat_channels(videos: list[torch.Tensor]) -> torch.Tensor:
    """Videos (N, T, C_i, H, W) -> (N, T, sum C_i, H, W) stored (N, T, H, W, C).

    torch.cat on dim 2 of channels-last videos returns a contiguous result (one more copy
    before the next conv); concatenating the (N, T, H, W, C) views writes the order at once.
    """
    return torch.cat([v.permute(0, 1, 3, 4, 2) for v in videos], dim=-1).permute(0, 1, 4, 2, 3)


def layout_name(x: torch.Tensor) -> str:
    """"contiguous", "channels_last", "channels_last_3d", "video_channels_last" or "strided"."""
    if x.dim() == 5 and is_video_channels_last(x) and not x.is_contiguous():
        return "video_channels_last"
    if x.is_contiguous():
        return "contiguous"
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return "channels_last"
    if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
        return "channels_last_3d"
    return "strided"


def set_channels_last(model: nn.Module, on: bool = True) -> nn.Module:
    """Make every submodule with a `channels_last` attribute follow (or leave) the order."""
    for m in model.modules():
        if hasattr(m, "channels_last"):
            m.channels_last = bool(on)
    return model


def uses_channels_last(model: nn.Module) -> bool:
    """True if any submodule of `model` follows the channels-last order."""
    return any(getattr(m, "channels_last", False) for m in model.modules())
