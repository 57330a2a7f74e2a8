"""f_s / f_t and the data pyramid: exact taps, borders, shapes."""

import pytest
import torch

from cvg_fast.config import get_preset
from cvg_fast.ops import downsample_to, pyramid, spatial_down, temporal_down


def test_spatial_down_taps_and_borders():
    # an impulse in the interior spreads as [1,3,3,1]/8 per axis; at the border [3,3,1]/7
    x = torch.zeros(1, 1, 1, 8, 8, dtype=torch.float64)
    x[..., 3, 3] = 1
    y = spatial_down(x)[0, 0, 0]
    assert y.shape == (4, 4)
    col = torch.tensor([0, 3 / 8, 1 / 8, 0], dtype=torch.float64)  # input row 3 -> out 1, 2
    torch.testing.assert_close(y, torch.outer(col, col))
    x = torch.zeros(1, 1, 1, 8, 8, dtype=torch.float64)
    x[..., 0, 0] = 1
    y = spatial_down(x)[0, 0, 0]
    torch.testing.assert_close(y[0, 0], torch.tensor(9 / 49, dtype=torch.float64))
    assert float(y[1:, :].abs().sum()) == 0 and float(y[:, 1:].abs().sum()) == 0


def test_spatial_down_preserves_constants_and_frames_independent():
    x = torch.full((2, 3, 3, 16, 16), 0.25)
    torch.testing.assert_close(spatial_down(x), torch.full((2, 3, 3, 8, 8), 0.25))
    v = torch.randn(2, 5, 3, 8, 8)
    per_frame = torch.stack([spatial_down(v[:, t: t + 1])[:, 0] for t in range(5)], dim=1)
    torch.testing.assert_close(spatial_down(v), per_frame)


def test_temporal_down_and_downsample_to():
    x = torch.arange(8.0).view(1, 8, 1, 1, 1).expand(1, 8, 3, 4, 4)
    assert temporal_down(x, 2)[0, :, 0, 0, 0].tolist() == [0, 2, 4, 6]
    assert downsample_to(torch.randn(2, 16, 3, 32, 32), 4, 8).shape == (2, 4, 3, 8, 8)
    with pytest.raises(ValueError):
        downsample_to(torch.randn(1, 6, 3, 32, 32), 4, 8)
    with pytest.raises(ValueError):
        spatial_down(torch.randn(1, 1, 3, 7, 8))


@pytest.mark.parametrize("name", ["ucf101", "kinetics600", "bdd100k", "tiny"])
def test_pyramid_shapes_match_presets(name):
    cfg = get_preset(name).shrunk(size_div=8 if name != "tiny" else 1)
    shapes = [(lv.frames, lv.size) for lv in cfg.levels]
    top = cfg.levels[-1]
    views = pyramid(torch.randn(1, top.frames, 3, top.size, top.size), shapes)
    assert [(v.shape[1], v.shape[3]) for v in views] == shapes
    # each view is computed from the one above it
    for lo, hi in zip(views[:-1], views[1:]):
        torch.testing.assert_close(lo, downsample_to(hi, lo.shape[1], lo.shape[3]))
