"""One interface for every video feature network used by the metrics.

A feature network turns uint8 videos (N, T, H, W, 3) into features (N, D) (what a
Fréchet distance compares) and class probabilities (N, K) (what IS and class
accuracy read). Subclasses implement `forward_clip` on one clip length; `score`
handles any length:

- `clip_frames = None` (I3D): the whole clip goes through the network in one pass
  (StyleGAN-V's fvd2048_128f feeds I3D 128 frames at once).
- `clip_frames = w` (the synthetic-set evaluator, w = 16): the clip is cut into
  back-to-back windows of w frames (a trailing remainder shorter than w is dropped)
  and features and probabilities are averaged over the windows, so a 64-frame
  video is scored as the mean of its four 16-frame windows.

Every network names itself (`name`) and the hash of its weights (`detector_hash`):
both go into each printed protocol and into the key of every statistics cache.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cvg_fast.errors import CvgError


class VideoFeatureNet(nn.Module):
    """Base class: uint8 videos (N, T, H, W, 3) in, (features (N, D), probs (N, K)) out."""

    name: str = "feature-net"
    detector_hash: str = ""  # sha256 of the weights, first 16 hex digits
    feature_dim: int = 0
    num_classes: int = 0
    clip_frames: int | None = None  # None: whole clip at once; w: w-frame windows, averaged
    preprocessing: str = ""  # one line for the printed protocol (resize, crop, value range)

    def forward_clip(self, videos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (N, t, H, W, 3) on self's device -> float32 (N, D), float32 (N, K)."""
        raise TypeError(f"{type(self).__name__} must define forward_clip")

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def describe(self) -> str:
        clip = "whole clip" if self.clip_frames is None else f"{self.clip_frames}-frame windows, averaged"
        return f"{self.name} (sha256 {self.detector_hash}), {clip}, {self.preprocessing}"

    @torch.inference_mode()
    def score(self, videos) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (N, T, H, W, 3) numpy or tensor -> (features (N, D), probs (N, K)), float32 CPU."""
        x = torch.as_tensor(np.asarray(videos)) if not torch.is_tensor(videos) else videos
        if x.dim() != 5 or x.shape[-1] != 3 or x.dtype != torch.uint8:
            raise CvgError(f"{self.name}: expected uint8 videos (N, T, H, W, 3), got "
                           f"{x.dtype} {tuple(x.shape)}")
        x = x.to(self.device)
        t = x.shape[1]
        w = self.clip_frames
        if w is None:
            f, p = self.forward_clip(x)
            return f.float().cpu(), p.float().cpu()
        if t < w:
            raise CvgError(f"{self.name} scores {w}-frame windows but the clips have {t} frames: "
                           f"use clips of at least {w} frames")
        feats, probs = 0, 0
        n_win = t // w
        for k in range(n_win):
            f, p = self.forward_clip(x[:, k * w:(k + 1) * w])
            feats, probs = feats + f.float(), probs + p.float()
        return (feats / n_win).cpu(), (probs / n_win).cpu()
