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


class BatchRandom:
    """One training batch's random draws, keyed per sample by its global position.

    Why: with one generator per process, a run's numbers depend on how the global batch
    is split; here row i of every draw comes from a generator seeded by
    (*key, positions[i]), so W processes x B rows draw exactly what 1 process x W*B rows
    draws, and training is the same run (up to float reduction order) on any world size
    with the same global batch. A draw of k*N rows (the discriminator's [real; fake])
    gives sample i the rows i, N + i, ... in that order. `shared` is one generator keyed
    without a position, for batch-wide draws that every process must agree on.

    Cost: one small draw per sample per call (N kernel launches on CUDA instead of one).
    """

    def __init__(self, key: tuple, positions, device: torch.device | str):
        self.device = torch.device(device)
        self.gens: list[torch.Generator] = []
        for p in positions:
            g = torch.Generator(device=self.device)
            g.manual_seed(seed_key(*key, int(p)))
            self.gens.append(g)
        self.shared = torch.Generator(device=self.device)
        self.shared.manual_seed(seed_key(*key, "shared"))

    @property
    def n(self) -> int:
        return len(self.gens)

    def _rows(self, rows: int, draw) -> torch.Tensor:
        if self.n == 0 or rows % self.n:
            raise ValueError(f"a draw of {rows} rows from a batch of {self.n} samples: rows must "
                             f"be a positive multiple of the batch")
        return torch.stack([draw(self.gens[r % self.n]) for r in range(rows)])

    def randn(self, rows: int, *shape: int) -> torch.Tensor:
        """(rows, *shape) standard normal."""
        return self._rows(rows, lambda g: torch.randn(shape, generator=g, device=self.device))

    def rand(self, rows: int, *shape: int) -> torch.Tensor:
        """(rows, *shape) uniform in [0, 1)."""
        return self._rows(rows, lambda g: torch.rand(shape, generator=g, device=self.device))

    def randint(self, high: int, rows: int) -> torch.Tensor:
        """(rows,) integers in [0, high)."""
        return self._rows(rows, lambda g: torch.randint(0, high, (), generator=g,
                                                        device=self.device))

    def get_state(self) -> list[torch.Tensor]:
        return [g.get_state() for g in (*self.gens, self.shared)]

    def set_state(self, states: list[torch.Tensor]) -> None:
        for g, s in zip((*self.gens, self.shared), states, strict=True):
            g.set_state(s)
