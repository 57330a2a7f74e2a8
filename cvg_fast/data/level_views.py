"""Decode only what one training level uses: the frames of its pyramid views.

A level-l step sees views of a top-level clip x^L (T_L frames at S_L px), the data
pyramid x^{l-1} = f_t(f_s^k(x^l)) (`cvg_fast.ops.pyramid`):

    level 1        x^1 = frames 0, K, 2K, ... of x^L (K = T_L / T_1) at S_1 px
    level l > 1    a window of x^{l-1}: frames s .. s+w-1, and the x^l frames it
                   upscales to: s*f .. (s+w)*f - 1 (f = T_l / T_{l-1})

so level 1 of bdd100k (48 frames at 256 px -> 12 at 64 px) needs a quarter of the
frames, and a level-2 window only its own. `LevelViews` names those top-level frames
(`top_indices`) and computes the views from them alone (`views`) with the same ops in
the same order as the full pyramid, so they equal its slices exactly (tests compare
frame by frame). The window start s is drawn here, from the item's seed, because the
frames to decode depend on it.

Shapes: decoded frames (n, 3, S_L, S_L) float in [-1, 1] -> "high" (T', 3, S_l, S_l)
and, for l > 1, "low" (w, 3, S_{l-1}, S_{l-1}).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cvg_fast.ops.pyramid import downsample_to


@dataclass(frozen=True)
class LevelViews:
    """The views level `level` trains on. shapes: [(frames_l, size_l)] for l = 1..L,
    bottom-up; window: the upscaler's training window in input frames (level > 1)."""

    shapes: tuple[tuple[int, int], ...]
    level: int
    window: int = 0

    def __post_init__(self):
        n = len(self.shapes)
        if not 1 <= self.level <= n:
            raise ValueError(f"LevelViews: level {self.level} outside 1..{n}")
        top = self.shapes[-1][0]
        for frames, _ in self.shapes:
            if frames < 1 or top % frames:
                raise ValueError(f"LevelViews: {frames} frames do not divide the top level's {top}")
        if self.level > 1 and not 1 <= self.window <= self.shapes[self.level - 2][0]:
            raise ValueError(f"LevelViews: window {self.window} outside 1..{self.shapes[self.level - 2][0]}")

    @classmethod
    def for_level(cls, cfg, level: int) -> "LevelViews":
        """From a CascadeConfig (duck-typed: `levels[i].frames/.size`, `window(level)`)."""
        shapes = tuple((lv.frames, lv.size) for lv in cfg.levels)
        return cls(shapes, level, cfg.window(level) if level > 1 else 0)

    # ----------------------------------------------------------------- frames
    @property
    def top_frames(self) -> int:
        return self.shapes[-1][0]

    def stride(self, level: int) -> int:
        """Top-level frames per frame of `level`."""
        return self.top_frames // self.shapes[level - 1][0]

    @property
    def num_starts(self) -> int:
        """Window starts a level > 1 can draw (in x^{l-1} frames); 1 for level 1."""
        if self.level == 1:
            return 1
        return self.shapes[self.level - 2][0] - self.window + 1

    def window_start(self, seed: int) -> int:
        """The window start of item seed `seed`: uniform over `num_starts`, keyed apart from
        the clip start (which the dataset draws from the same seed)."""
        if self.level == 1:
            return 0
        state = np.random.SeedSequence([int(seed) & (2**63 - 1), 0x77696E]).generate_state(2)
        g = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        return int(torch.randint(self.num_starts, (1,), generator=g).item())

    def top_indices(self, start: int = 0) -> list[int]:
        """Frames of the top-level clip the views need (window start `start`)."""
        k = self.stride(self.level)
        if self.level == 1:
            return [j * k for j in range(self.shapes[0][0])]
        if not 0 <= start < self.num_starts:
            raise ValueError(f"LevelViews: window start {start} outside 0..{self.num_starts - 1}")
        f = self.shapes[self.level - 1][0] // self.shapes[self.level - 2][0]
        return [(start * f + j) * k for j in range(self.window * f)]

    # ------------------------------------------------------------------ views
    def views(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """frames: the `top_indices` frames (n, 3, S_L, S_L) -> {"high", "low" (level > 1)}.

        Each spatial step is the pyramid's own (`downsample_to` level by level from the
        top), so the results equal the full pyramid's frames bit for bit: a per-frame op
        gives the same pixels whichever other frames share its batch.
        """
        n = frames.shape[0]
        x = frames.unsqueeze(0)  # (1, n, 3, S, S)
        for _, size in reversed(self.shapes[self.level - 1: -1]):
            x = downsample_to(x, n, size)  # space only: the frames are already the level's
        out = {"high": x[0]}
        if self.level > 1:
            f = self.shapes[self.level - 1][0] // self.shapes[self.level - 2][0]
            low = downsample_to(x[:, ::f], self.window, self.shapes[self.level - 2][1])
            out["low"] = low[0]
        return out

    def describe(self) -> str:
        t, s = self.shapes[self.level - 1]
        if self.level == 1:
            return (f"level 1 reads {t} of {self.top_frames} clip frames (every "
                    f"{self.stride(1)}-th) for {t} x {s}px")
        return (f"level {self.level} reads a window of {len(self.top_indices())} of "
                f"{self.top_frames} clip frames for {t}-frame {s}px / "
                f"{self.window}-frame {self.shapes[self.level - 2][1]}px pairs")
