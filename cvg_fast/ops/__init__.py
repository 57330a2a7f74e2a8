"""Ops: a plain PyTorch reference for each, fused backends behind ONE dispatch point.

Model code calls only these functions; the backend (reference | cpp | cuda |
triton) is resolved in `cvg_fast.ops.backends`.
"""

from cvg_fast.ops.gru_blend import gru_blend, gru_blend_reference
from cvg_fast.ops.gru_cell import gru_cell, gru_cell_reference, gru_sequence
from cvg_fast.ops.spectral_norm import sn_normalize, sn_normalize_reference
from cvg_fast.ops.pyramid import (
    downsample_to, pyramid, pyramid_down, pyramid_down_reference, spatial_down,
    spatial_down_levels, temporal_down, upsample_time, upsample_to,
)

__all__ = [
    "gru_blend", "gru_blend_reference", "gru_cell", "gru_cell_reference", "gru_sequence", "pyramid_down",
    "pyramid_down_reference", "spatial_down", "spatial_down_levels", "temporal_down",
    "downsample_to", "pyramid", "upsample_time", "upsample_to", "sn_normalize",
    "sn_normalize_reference",
]
