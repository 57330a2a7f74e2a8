"""Upscalers: aligned in time with the pyramid, temporal-only, a learned branch that moves."""

import pytest
import torch

from cvg_fast.config import CascadeConfig, LevelConfig, get_preset
from cvg_fast.models import UpscalerGenerator, build_discriminator, build_generator
from cvg_fast.ops import downsample_to, temporal_down, upsample_time


def _flat_frames(n, t, size, seed=0):
    """(n, t, 3, size, size): each frame one random colour (constant in space), random in time."""
    g = torch.Generator().manual_seed(seed)
    c = torch.rand(n, t, 3, 1, 1, generator=g) * 1.8 - 0.9
    return c.expand(n, t, 3, size, size).contiguous()


def _factors():
    """(in_size, t_factor, s_factor) of every preset's upscaling levels, plus tf 1/2/4 x sf 1/2/4."""
    seen = set()
    for name in ("ucf101", "kinetics600", "bdd100k", "tiny"):
        cfg = get_preset(name)
        for level in range(2, cfg.num_levels + 1):
            seen.add((8, cfg.t_factor(level), cfg.s_factor(level)))
    for tf in (1, 2, 4):
        for sf in (1, 2, 4):
            seen.add((8, tf, sf))
    return sorted(seen)


def test_upsample_time_is_the_right_inverse_of_f_t():
    x = torch.arange(5.0).view(1, 5, 1, 1, 1)
    y = upsample_time(x, 3)
    assert y.flatten().tolist() == pytest.approx(
        [0, 1 / 3, 2 / 3, 1, 4 / 3, 5 / 3, 2, 7 / 3, 8 / 3, 3, 10 / 3, 11 / 3, 4, 4, 4])
    for k in (1, 2, 4):
        v = torch.randn(2, 6, 3, 4, 4)
        torch.testing.assert_close(temporal_down(upsample_time(v, k), k), v, rtol=0, atol=0)


@pytest.mark.parametrize("in_size,tf,sf", _factors())
def test_base_is_aligned_with_the_pyramid(in_size, tf, sf):
    """f_t(f_s^m(base(x))) == x on frames constant in space: input frame i is output frame tf*i."""
    g = UpscalerGenerator(in_size, tf, sf, ch=4, z_ch=1).eval()
    x = _flat_frames(2, 5, in_size)
    base = g.base(x)
    assert base.shape == (2, 5 * tf, 3, in_size * sf, in_size * sf) and base.dtype == torch.float32
    torch.testing.assert_close(downsample_to(base, 5, in_size), x, atol=1e-6, rtol=0)
    # the frames between move linearly toward the next input frame; the last ones hold
    if tf > 1:
        mid = base[:, 1, :, 0, 0]
        torch.testing.assert_close(mid, x[:, 0, :, 0, 0] + (x[:, 1, :, 0, 0] - x[:, 0, :, 0, 0]) / tf)
        torch.testing.assert_close(base[:, -1], base[:, -tf])


@pytest.mark.parametrize("tf,sf", [(2, 2), (4, 2), (2, 1), (1, 2)])
def test_untrained_upscaler_output_matches_its_input(tf, sf):
    """At initialisation (gain 0) the whole generator is its base path: the matching D's view
    of the output equals the input. The old trilinear (align_corners=False) time axis was off
    by up to 0.3 here."""
    g = UpscalerGenerator(16, tf, sf, ch=8, z_ch=2).eval()
    x = _flat_frames(2, 4, 16, seed=3)
    with torch.no_grad():
        out = g(x, torch.randn(2, 4 * tf, 2, 16, 16))
    assert float((downsample_to(out, 4, 16) - x).abs().max()) < 1e-5


def test_temporal_only_upscaler_trains_and_generates(tmp_path):
    """Same size, more frames (s_factor 1): builds, runs a training step and generates."""
    from cvg_fast.training import LevelTrainer
    from cvg_fast.training.distributed import DistInfo
    from cvg_fast.sampling import generate, load_cascade
    from test_training import RandomClips

    cfg = CascadeConfig(name="t-only", levels=[LevelConfig(frames=4, size=16, g_ch=8, d_ch=8,
                                                           d_frames=2),
                                               LevelConfig(frames=8, size=16, g_ch=8, d_ch=8,
                                                           window=2, d_frames=2)],
                        num_classes=0, z_dim=8, z_ch=2, z_t_dim=4).validate()
    cfg.train.batch_size, cfg.train.num_workers, cfg.train.steps = 2, 0, 1
    cfg.train.bn_recalibration_batches = 1
    g = build_generator(cfg, 2, 0)
    assert g.s_factor == 1 and g.t_factor == 2
    d = build_discriminator(cfg, 2, 0)
    out = g(torch.rand(2, 2, 3, 16, 16), torch.randn(2, 4, 2, 16, 16))
    assert out.shape == (2, 4, 3, 16, 16)
    assert set(d(out, torch.rand(2, 2, 3, 16, 16))) == {"spatial", "temporal", "matching"}
    ds = RandomClips(8, 16, num_classes=0)
    for level in (1, 2):
        LevelTrainer(cfg, level, ds, tmp_path, None, DistInfo(), progress=False).run()
    videos = generate(load_cascade(tmp_path, device="cpu"), num_videos=2, frames=20,
                      progress=False)
    assert videos.shape == (2, 20, 16, 16, 3)


def test_learned_branch_gain_moves_within_a_few_steps(tiny_cfg, tmp_path):
    """The residual gain starts at 0 (exact input) and its effective step is GAIN_SCALE x lr:
    after 10 Adam steps it has moved well past what a plain parameter could (about 10 x lr;
    the old code's gain was -0.065 after the demo's 240 steps at lr 2e-4)."""
    from test_training import _trainer

    tiny_cfg.train.steps = 1
    _trainer(tiny_cfg, 1, tmp_path).run()
    tr = _trainer(tiny_cfg, 2, tmp_path)
    assert float(tr.G.gain.detach()) == 0.0
    batch = next(iter(torch.utils.data.DataLoader(
        tr.dataset, batch_size=4, sampler=[(i, i) for i in range(4)])))
    for _ in range(10):
        tr.train_step(batch)
        tr.step += 1
    lr = tiny_cfg.train.lr_g
    moved = abs(float(tr.G.gain.detach()))
    assert moved > 20 * lr, f"gain moved {moved:.2e} in 10 steps (lr {lr})"


def test_noise_enters_only_as_training_asks():
    """The noise input's per-channel strength starts at 0: a fresh upscaler is a deterministic
    function of its input (full-strength per-pixel noise from step 0 made flickering speckle)."""
    g = UpscalerGenerator(16, 2, 2, ch=8, z_ch=3).eval()
    with torch.no_grad():
        g.residual_gain.fill_(0.02)  # the learned branch is on
        x = torch.rand(2, 4, 3, 16, 16) * 2 - 1
        a = g(x, torch.randn(2, 8, 3, 16, 16))
        b = g(x, torch.randn(2, 8, 3, 16, 16))
        torch.testing.assert_close(a, b)
        g.noise_gain.fill_(0.5)
        assert (g(x, torch.randn(2, 8, 3, 16, 16)) - a).abs().max() > 1e-3


def test_learned_branch_adds_detail_only():
    """With s_factor > 1 the learned branch is high-pass: smooth changes (colour, layout) are
    removed before they reach the output, so f_s of the branch is small; s_factor 1 keeps it."""
    import torch.nn.functional as F

    g = UpscalerGenerator(16, 2, 2, ch=4, z_ch=1)
    smooth = F.interpolate(torch.randn(6, 3, 8, 8), size=32, mode="bilinear")
    detail = g.detail(smooth)
    f_s = lambda v: downsample_to(v.view(1, 6, 3, 32, 32), 6, 16).abs().mean()  # noqa: E731
    assert float(f_s(detail)) < 0.25 * float(f_s(smooth))
    torch.testing.assert_close(g.detail(torch.ones(2, 3, 32, 32)), torch.zeros(2, 3, 32, 32))
    t_only = UpscalerGenerator(16, 2, 1, ch=4, z_ch=1)
    torch.testing.assert_close(t_only.detail(smooth[:, :, :16, :16]), smooth[:, :, :16, :16])

