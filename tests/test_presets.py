"""The paper presets say what the paper says; our additions are switchable."""

import torch

from cvg_fast.config import get_preset
from cvg_fast.models import build_generator


def test_paper_presets():
    k = get_preset("kinetics600")
    assert k.num_classes == 600  # the paper's Kinetics-600 model is class-conditional
    assert k.frame_stride == 2 and k.train.steps == 300_000
    assert [(lv.frames, lv.size) for lv in k.levels] == [(24, 32), (48, 128)]
    assert k.window(2) == 6
    b = get_preset("bdd100k")
    assert b.frame_stride == 2 and b.num_classes == 0 and b.num_levels == 3
    assert (b.levels[-1].frames, b.levels[-1].size) == (48, 256)
    u = get_preset("ucf101")
    assert (u.levels[-1].frames, u.levels[-1].size) == (16, 128) and u.frame_stride == 1
    for p in (k, b, u):  # the paper's optimiser; our input rollout is off for its setups
        assert (p.train.lr_g, p.train.lr_d) == (1e-4, 5e-4) and p.train.input_rollout == 0


def test_per_frame_noise_is_ours_and_switches_off():
    """z_t (per-frame level-1 noise) is not in the paper: --z-t-dim 0 gives the paper's G."""
    cfg = get_preset("tiny")
    cfg.z_t_dim = cfg.motion_dim = 0  # the motion sinusoids are ours too
    g = build_generator(cfg, 1, 0).eval()
    assert g.fc.in_features == cfg.z_dim
    with torch.no_grad():
        z = torch.randn(2, cfg.z_dim)
        torch.testing.assert_close(g(z, frames=6), g(z, frames=6))  # no hidden noise draw


def test_motion_sinusoids_are_ours_tiny_only():
    """motion_dim and the temporal D's frame differences are ours: on in tiny, off in every
    paper preset (whose level 1 stays the paper's generator and discriminator)."""
    assert get_preset("tiny").motion_dim == 4
    assert get_preset("tiny").levels[0].temporal_d_inputs == "frames+diff"
    for name in ("ucf101", "kinetics600", "bdd100k"):
        p = get_preset(name)
        assert p.motion_dim == 0 and p.train.tbptt_horizon == 0
        assert all(lv.temporal_d_inputs == "frames" for lv in p.levels)
        assert build_generator(p, 1, 0).motion is None
