"""Controlled degradations of uint8 videos: the dials a video metric must respond to.

Why: a metric such as FVD is only trustworthy if it grows with what is wrong with a
video. Each function here makes one kind of wrongness a dial, to test a metric (the
distance must rise with the strength) and to train the synthetic-set evaluator
(`cvg_fast.metrics.synth_evaluator` learns to tell each one and its strength):

- `blur(videos, radius)`: spatial Gaussian blur, sigma = `radius` px (sharpness).
- `add_noise(videos, sigma, rng)`: additive Gaussian noise, sigma on the 0-255 scale
  (texture).
- `freeze_frames(videos, fraction, rng)`: that fraction of the frames after the first
  repeats the frame before it, so the video stalls (motion).
- `shuffle_frames(videos, strength, rng)`: round(strength x T) frames trade places in
  one cycle, each showing another's content (temporal coherence); 1 scrambles all.

Every function takes uint8 videos (N, T, H, W, 3) and returns a new uint8 array of
the same shape; strength 0 returns an exact copy. Randomness comes from `rng` (a
`np.random.Generator` or an int seed) and is drawn the same way whatever the
strength, video by video: with one seed, a larger strength degrades the same pixels
further (noise: the same noise field, scaled), freezes a superset of the frames and
moves a superset of the frames. `degrade(videos, name, strength, seed)` picks one by
name from `DEGRADATIONS`.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DEGRADATIONS",
    "add_noise",
    "blur",
    "degrade",
    "freeze_frame_index",
    "gaussian_kernel",
    "freeze_frames",
    "shuffle_frame_index",
    "shuffle_frames",
]

_CHUNK_FRAMES = 2048  # frames blurred per torch call: bounds the float32 working memory


def _check(videos) -> np.ndarray:
    v = np.asarray(videos)
    if v.ndim != 5 or v.shape[-1] != 3 or v.dtype != np.uint8:
        raise ValueError(f"expected uint8 videos (N, T, H, W, 3), got {v.dtype} {v.shape}")
    return v


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _check_strength(name: str, value: float, upper: float | None = None) -> float:
    value = float(value)
    if not value >= 0 or (upper is not None and value > upper) or not math.isfinite(value):
        bound = f"[0, {upper:g}]" if upper is not None else ">= 0"
        raise ValueError(f"{name} must be {bound} (got {value})")
    return value


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian taps, float64 (2h + 1,), h = ceil(3 sigma)."""
    half = max(1, math.ceil(3.0 * sigma))
    x = np.arange(-half, half + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def blur(videos, radius: float) -> np.ndarray:
    """Gaussian blur of every frame with sigma = `radius` px (reflected borders)."""
    v = _check(videos)
    radius = _check_strength("blur radius", radius)
    if radius == 0:
        return v.copy()
    n, t, h, w, _ = v.shape
    taps = gaussian_kernel(radius)
    half = min(len(taps) // 2, h - 1, w - 1)  # reflect padding needs pad < size
    if half < 1:
        return v.copy()
    taps = taps[len(taps) // 2 - half: len(taps) // 2 + half + 1]
    taps = torch.as_tensor(taps / taps.sum(), dtype=torch.float32)
    kx = taps.view(1, 1, 1, -1).expand(3, 1, 1, -1)
    ky = taps.view(1, 1, -1, 1).expand(3, 1, -1, 1)
    frames = torch.from_numpy(v.reshape(n * t, h, w, 3))
    out = np.empty((n * t, h, w, 3), np.uint8)
    for s in range(0, n * t, _CHUNK_FRAMES):
        x = frames[s:s + _CHUNK_FRAMES].permute(0, 3, 1, 2).float()
        x = F.conv2d(F.pad(x, (half, half, 0, 0), mode="reflect"), kx, groups=3)
        x = F.conv2d(F.pad(x, (0, 0, half, half), mode="reflect"), ky, groups=3)
        y = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        out[s:s + _CHUNK_FRAMES] = y.numpy()
    return out.reshape(v.shape)


def add_noise(videos, sigma: float, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Add N(0, sigma^2) noise per pixel and channel (0-255 scale), round, clip to uint8."""
    v = _check(videos)
    sigma = _check_strength("noise sigma", sigma)
    gen = _rng(rng)
    out = np.empty_like(v)
    for i in range(len(v)):  # one video at a time: the float32 noise stays small
        z = gen.standard_normal(v.shape[1:], dtype=np.float32)
        out[i] = np.clip(np.rint(v[i] + np.float32(sigma) * z), 0, 255).astype(np.uint8)
    return out


def freeze_frame_index(
    frames: int, fraction: float, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Source frame per output frame, int64 (frames,), for `freeze_frames`.

    round(fraction x (frames - 1)) of frames 1..T-1, drawn in a random order, show the
    frame shown before them (a run of frozen frames stays on the last moving one).
    """
    fraction = _check_strength("freeze fraction", fraction, 1.0)
    order = _rng(rng).permutation(frames - 1) + 1
    frozen = np.zeros(frames, bool)
    frozen[order[: int(round(fraction * (frames - 1)))]] = True
    idx = np.arange(frames)
    for t in range(1, frames):
        if frozen[t]:
            idx[t] = idx[t - 1]
    return idx


def shuffle_frame_index(
    frames: int, strength: float, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Source frame per output frame, int64 (frames,), for `shuffle_frames`.

    k = round(strength x frames) frames, drawn in a random order c_0..c_{k-1}, form one
    cycle: frame c_i shows c_{i+1 mod k}, so every chosen frame moves (k < 2: identity).
    """
    strength = _check_strength("shuffle strength", strength, 1.0)
    order = _rng(rng).permutation(frames)
    k = int(round(strength * frames))
    idx = np.arange(frames)
    if k >= 2:
        chosen = order[:k]
        idx[chosen] = np.roll(chosen, -1)
    return idx


def _reindex(v: np.ndarray, make_index, strength: float, rng) -> np.ndarray:
    gen = _rng(rng)
    out = np.empty_like(v)
    for i in range(len(v)):
        out[i] = v[i][make_index(v.shape[1], strength, gen)]
    return out


def freeze_frames(
    videos, fraction: float, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Stall each video: a `fraction` of its frames repeat the previous one (see index)."""
    return _reindex(_check(videos), freeze_frame_index, fraction, rng)


def shuffle_frames(
    videos, strength: float, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Temporal disorder: round(strength x T) frames of each video trade places."""
    return _reindex(_check(videos), shuffle_frame_index, strength, rng)


# name -> fn(videos, strength, rng); the strength's unit is the function's own
DEGRADATIONS: dict[str, Callable[..., np.ndarray]] = {
    "blur": lambda videos, strength, rng=None: blur(videos, strength),
    "noise": add_noise,
    "freeze": freeze_frames,
    "shuffle": shuffle_frames,
}


def degrade(videos, name: str, strength: float, seed: int = 0) -> np.ndarray:
    """`DEGRADATIONS[name](videos, strength, np.random.default_rng(seed))`."""
    if name not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {name!r}; choose from {', '.join(DEGRADATIONS)}")
    return DEGRADATIONS[name](videos, strength, np.random.default_rng(seed))
