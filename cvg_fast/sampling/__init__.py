"""Sampling: `generate()` streams long videos through the cascade; `load_cascade()` loads runs."""

from cvg_fast.models.checkpoint import load_cascade
from cvg_fast.sampling.generate import GenerationStats, generate, iter_videos

__all__ = ["generate", "iter_videos", "load_cascade", "GenerationStats"]
