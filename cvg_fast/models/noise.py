"""Per-video, per-frame noise keyed by (seed, level, video, frame).

Video i's noise depends only on (seed, i), never on the batch it shares or on
how a long video is cut into windows: frame t of video i at level l always
gets the same noise. (A known peer bug expanded a per-video code t-major where
b-major was meant, mixing videos in a batch; keying by index rules that out.)
"""

from __future__ import annotations

import hashlib

import torch


def seed_key(*parts) -> int:
    """A 63-bit seed from any tuple of ints/strings (stable across runs and machines)."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def video_noise(seed: int, video_ids: list[int], dim: int, level: int = 1) -> torch.Tensor:
    """(len(video_ids), dim) standard normal, row i keyed by (seed, level, video_ids[i])."""
    rows = [torch.randn(dim, generator=torch.Generator().manual_seed(seed_key(seed, level, v)))
            for v in video_ids]
    return torch.stack(rows) if rows else torch.empty(0, dim)


def frame_noise(seed: int, video_ids: list[int], level: int, t0: int, t1: int,
                shape: tuple[int, ...]) -> torch.Tensor:
    """(len(video_ids), t1 - t0, *shape) standard normal, keyed per (seed, level, video, frame)."""
    out = torch.empty(len(video_ids), t1 - t0, *shape)
    for i, v in enumerate(video_ids):
        for j, t in enumerate(range(t0, t1)):
            g = torch.Generator().manual_seed(seed_key(seed, level, v, t))
            out[i, j] = torch.randn(shape, generator=g)
    return out
