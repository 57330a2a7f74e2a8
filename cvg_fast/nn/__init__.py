"""Layers: spectral-norm convs, ConvGRU, residual blocks, (sync, conditional) batch norm."""

from cvg_fast.nn.batchnorm import ConditionalBatchNorm, SyncBatchNorm, standing_statistics
from cvg_fast.nn.convgru import ConvGRU
from cvg_fast.nn.resblocks import DBlock, GBlock
from cvg_fast.nn.spectral_norm import (
    SNConv2d, SNConv3d, SNEmbedding, SNLinear, spectral_norm_step,
)

__all__ = [
    "ConditionalBatchNorm", "SyncBatchNorm", "standing_statistics", "ConvGRU", "DBlock", "GBlock",
    "SNConv2d", "SNConv3d", "SNEmbedding", "SNLinear", "spectral_norm_step",
]
