"""Random in-memory clips with the dataset contract of `VideoFolder`, for benchmarks and tests.

The trainer's sampler asks for items by key (index, seed); the same key must give the
same clip, so a resumed run reads what an uninterrupted one would have. No files, no
decoding: speed measurements see only the training step.
"""

from __future__ import annotations

import torch


class RandomClips:
    """In-memory random clips for the trainer: key (index, seed) -> {"video": (T, 3, S, S)
    in [-1, 1], "label": ()}; the same key gives the same clip (the sampler's contract)."""

    def __init__(self, frames: int, size: int, num_classes: int = 0, n: int = 64):
        self.frames, self.size, self.num_classes, self.n = frames, size, num_classes, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key):
        idx, seed = key
        g = torch.Generator().manual_seed(seed % (1 << 62))
        video = torch.rand(self.frames, 3, self.size, self.size, generator=g) * 2 - 1
        return {"video": video, "label": torch.tensor(idx % max(self.num_classes, 1))}
