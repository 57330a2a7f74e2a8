"""Training batches that are a pure function of (seed, step, rank).

Every process draws its share of the global batch from a per-epoch
permutation keyed by (seed, epoch), and each clip's start from a seed keyed
by its global position. Resuming at step s therefore reads exactly the clips
an uninterrupted run would have read, whatever the number of loader workers.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, Sampler

from cvg_fast.models.noise import seed_key


class StepSampler(Sampler):
    """Infinite stream of (video_index, clip_seed) for this rank, from `start_step` on."""

    def __init__(self, num_videos: int, batch_size: int, rank: int, world: int, seed: int,
                 start_step: int = 0):
        self.n, self.b, self.rank, self.world = num_videos, batch_size, rank, world
        self.seed, self.start_step = seed, start_step
        self._perm_epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(seed_key(self.seed, "data", epoch))
            self._perm, self._perm_epoch = torch.randperm(self.n, generator=g), epoch
        return self._perm

    def item(self, step: int, j: int) -> tuple[int, int]:
        pos = (step * self.world + self.rank) * self.b + j
        epoch, offset = divmod(pos, self.n)
        return int(self._permutation(epoch)[offset]), seed_key(self.seed, "clip", pos)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        step = self.start_step
        while True:
            for j in range(self.b):
                yield self.item(step, j)
            step += 1


def make_loader(dataset, batch_size: int, rank: int, world: int, seed: int, start_step: int,
                num_workers: int, pin_memory: bool = False) -> DataLoader:
    """Batches {"video": (B, T, 3, H, W) in [-1, 1], "label": (B,)} forever, step-keyed."""
    sampler = StepSampler(len(dataset), batch_size, rank, world, seed, start_step)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      pin_memory=pin_memory, persistent_workers=num_workers > 0,
                      prefetch_factor=2 if num_workers > 0 else None)
