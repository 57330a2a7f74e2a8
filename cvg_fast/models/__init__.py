"""Generators, discriminators, windowed upscaling and the Cascade container."""

from cvg_fast.models.cascade import Cascade, build_discriminator, build_generator
from cvg_fast.models.discriminators import (
    LevelDiscriminator, MatchingDiscriminator, SpatialDiscriminator, TemporalDiscriminator,
)
from cvg_fast.models.generators import Level1Generator, UpscalerGenerator
from cvg_fast.models.noise import BatchRandom, frame_noise, video_noise
from cvg_fast.models.windows import stream_upscale, window_starts

__all__ = [
    "Cascade", "build_discriminator", "build_generator", "LevelDiscriminator",
    "MatchingDiscriminator", "SpatialDiscriminator", "TemporalDiscriminator", "Level1Generator",
    "UpscalerGenerator", "BatchRandom", "frame_noise", "video_noise", "stream_upscale", "window_starts",
]
