"""Shapes of every module for all four presets, conditioning, D pairing, per-video noise."""

import pytest
import torch

from cvg_fast.config import get_preset
from cvg_fast.models import (
    MatchingDiscriminator, SpatialDiscriminator, build_discriminator, build_generator,
    frame_noise, video_noise,
)
from cvg_fast.ops import downsample_to

PRESETS = ["ucf101", "kinetics600", "bdd100k", "tiny"]


def _small(name):
    # same structure (levels, factors, windows), tiny sizes and widths: one forward is cheap
    return get_preset(name).shrunk(size_div=1 if name == "tiny" else 8, width_div=8)


@pytest.mark.parametrize("name", PRESETS)
def test_full_width_construction(name):
    cfg = get_preset(name)
    for level in range(1, cfg.num_levels + 1):
        g = build_generator(cfg, level, num_classes=5)
        d = build_discriminator(cfg, level, num_classes=5)
        assert sum(p.numel() for p in g.parameters()) > 0
        assert (d.matching is not None) == (level > 1)


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("num_classes", [0, 3])
def test_forward_shapes_every_level(name, num_classes):
    torch.manual_seed(0)
    cfg = _small(name)
    n = 2
    y = torch.tensor([0, 2]) if num_classes else None
    for level in range(1, cfg.num_levels + 1):
        lv = cfg.levels[level - 1]
        g = build_generator(cfg, level, num_classes)
        d = build_discriminator(cfg, level, num_classes)
        if level == 1:
            x_low = None
            out = g(torch.randn(n, cfg.z_dim), y)
            assert out.shape == (n, lv.frames, 3, lv.size, lv.size)
            longer = g(torch.randn(n, cfg.z_dim), y, frames=3 * lv.frames)  # unrolls past T
            assert longer.shape == (n, 3 * lv.frames, 3, lv.size, lv.size)
        else:
            prev = cfg.levels[level - 2]
            w = cfg.window(level)
            tf = cfg.t_factor(level)
            x_low = torch.rand(n, w, 3, prev.size, prev.size) * 2 - 1
            out = g(x_low, torch.randn(n, w * tf, cfg.z_ch, prev.size, prev.size), y)
            assert out.shape == (n, w * tf, 3, lv.size, lv.size)
        assert out.abs().max() <= 1
        scores = d(out, x_low, y)
        assert scores["spatial"].shape == (n, min(lv.d_frames, out.shape[1]))
        assert scores["temporal"].shape == (n,)
        assert ("matching" in scores) == (level > 1)
        if level > 1:
            assert scores["matching"].shape == (n,)
        sum(s.sum() for s in scores.values()).backward()
        assert all(p.grad is not None for p in d.parameters() if p.requires_grad)


def test_no_md_ablation_drops_matching():
    cfg = _small("tiny")
    cfg.levels[1].matching = False
    d = build_discriminator(cfg, 2, 0)
    assert d.matching is None
    out = d(torch.randn(2, 8, 3, 32, 32), torch.randn(2, 4, 3, 16, 16))
    assert set(out) == {"spatial", "temporal"}


def test_temporal_d_downsampling_is_configurable():
    cfg = _small("tiny")
    for down, res in [(1, 16), (2, 8), (4, 4)]:
        cfg.levels[0].temporal_d_down = down
        d = build_discriminator(cfg, 1, 0)
        seen = []
        d.temporal.net.blocks[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
        assert d(torch.randn(2, 8, 3, 16, 16))["temporal"].shape == (2,)
        assert seen[0][-1] == res
    with pytest.raises(ValueError, match="power of two"):
        from cvg_fast.models import TemporalDiscriminator

        TemporalDiscriminator(16, 8, downsample=3)


def test_matching_pair_is_downsampled_output_next_to_input():
    high = torch.randn(2, 8, 3, 32, 32)
    low = torch.randn(2, 4, 3, 16, 16)
    pair = MatchingDiscriminator.pair(high, low)
    assert pair.shape == (2, 4, 6, 16, 16)
    torch.testing.assert_close(pair[:, :, :3], downsample_to(high, 4, 16))
    torch.testing.assert_close(pair[:, :, 3:], low)


def test_spatial_d_samples_distinct_frames_per_video():
    g = torch.Generator().manual_seed(0)
    idx = SpatialDiscriminator.sample_frames(64, 8, 5, g, torch.device("cpu"))
    assert idx.shape == (64, 5)
    assert all(len(set(row.tolist())) == 5 for row in idx)
    assert len({tuple(r.tolist()) for r in idx}) > 1  # videos draw different frames


def test_upscaler_starts_as_its_resized_input():
    from cvg_fast.models.generators import _resize_frames

    cfg = _small("tiny")
    g = build_generator(cfg, 2, 0).eval()  # residual gain 0 at init
    with torch.no_grad():
        x = torch.rand(1, 4, 3, 16, 16) * 1.6 - 0.8
        out = g(x, torch.randn(1, 8, cfg.z_ch, 16, 16))
        expected = _resize_frames(g.upsample_time(x), 32)
        assert out.shape == (1, 8, 3, 32, 32)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
        g.residual_gain.fill_(1.0)  # once the residual is on, the output departs from it
        assert (g(x, torch.randn(1, 8, cfg.z_ch, 16, 16)) - expected).abs().mean() > 1e-3


def test_noise_is_per_video_not_per_batch():
    a = video_noise(7, [0, 1, 2, 3], 16)
    b = video_noise(7, [2], 16)
    torch.testing.assert_close(a[2:3], b)
    assert not torch.allclose(a[0], a[1])
    f = frame_noise(7, [0, 1], 2, 0, 6, (2, 4, 4))
    g = frame_noise(7, [1], 2, 3, 6, (2, 4, 4))  # same frames, other window and batch
    torch.testing.assert_close(f[1:, 3:], g)
    assert not torch.allclose(f[0], f[1])


def test_conditional_generator_needs_labels():
    cfg = _small("tiny")
    g = build_generator(cfg, 1, 3)
    with pytest.raises(ValueError, match="labels"):
        g(torch.randn(2, cfg.z_dim))


def test_level1_frame_noise_is_causal_and_drives_every_step():
    cfg = _small("tiny")
    g = build_generator(cfg, 1, 0).eval()
    z = torch.randn(2, cfg.z_dim)
    e = torch.randn(2, 12, cfg.z_t_dim)
    with torch.no_grad():
        a = g(z, frames=12, frame_noise=e)
        e2 = e.clone()
        e2[:, 7] += 1.0
        b = g(z, frames=12, frame_noise=e2)
    torch.testing.assert_close(a[:, :7], b[:, :7])  # the past does not see the future
    assert (a[:, 7:] - b[:, 7:]).abs().amax(dim=(0, 2, 3, 4)).min() > 0  # later frames do
    with pytest.raises(ValueError, match="frame_noise"):
        g(z, frames=12, frame_noise=e[:, :5])


def test_time_pooling_keeps_every_frame_of_odd_clips():
    """avg_pool3d floors odd T (6 -> 3 -> 1): the last of 3 frames fell out of the pooled
    path. Ceil mode: each frame's share of the pooled sum is exact, and in a matching D every
    frame of a 3- or 6-frame window gets at least half its fair share of the gradient."""
    from cvg_fast.nn.resblocks import _downsample

    x = torch.ones(1, 1, 3, 4, 4, requires_grad=True)
    _downsample(_downsample(x)).sum().backward()
    shares = x.grad.sum((0, 1, 3, 4)) / x.grad.sum()
    torch.testing.assert_close(shares, torch.tensor([0.25, 0.25, 0.5]))
    assert _downsample(torch.ones(1, 1, 5, 4, 4)).shape[2] == 3
    torch.manual_seed(0)
    d = MatchingDiscriminator(16, 8)
    for t in (3, 6):
        grad = torch.zeros(t)
        for _ in range(3):
            low = torch.randn(2, t, 3, 16, 16, requires_grad=True)
            high = torch.randn(2, t * 2, 3, 32, 32)
            d(high, low).sum().backward()
            grad += low.grad.abs().sum((0, 2, 3, 4))
        share = grad / grad.sum()
        assert float(share.min()) > 0.5 / t, (t, share.tolist())


def test_level1_motion_sinusoids_keep_the_input_moving_and_stream_exactly():
    """motion_dim M: every frame's input carries sin/cos(w t + phi) of its absolute index, so
    chunks (clock carried in the state) equal one pass, and the inputs far past the horizon
    still change from frame to frame (a plain generator's input is constant but for noise)."""
    from cvg_fast.models.generators import Level1Generator

    torch.manual_seed(0)
    g = Level1Generator(8, 16, 8, 16, 2, z_t_dim=0, motion_dim=4).eval()
    z, y = torch.randn(3, 16), torch.tensor([0, 1, 1])
    with torch.no_grad():
        full = g(z, y, frames=40)
        parts = list(g.stream(z, y, 40, 6))
        torch.testing.assert_close(torch.cat(parts, dim=1), full)
        _, state = g(z, y, frames=40, return_state=True)
        assert len(state) == len(g.grus) + 1 and torch.equal(state[-1], torch.full((3,), 40.0))
        code = torch.cat([z, g.embed(y)], dim=1)
        m = g._motion_codes(code, torch.full((3,), 1000.0), 8)  # (N, 8, 2M) at frames 1000..
        assert m.shape == (3, 8, 8)
        torch.testing.assert_close(m.pow(2).view(3, 8, 2, 4).sum(2), torch.ones(3, 8, 4))
        assert (m[:, 1:] - m[:, :-1]).abs().mean() > 1e-3
        with pytest.raises(ValueError, match="frame clock"):
            g(z, y, frames=4, state=state[:-1])


def test_temporal_d_with_frame_differences_sees_them_on_three_more_channels():
    """temporal_d_inputs "frames+diff": the temporal D's input is the clip and x_t - x_{t-1}
    (0 at frame 0), so a still clip's extra channels are exactly 0."""
    cfg = _small("tiny")
    cfg.levels[0].temporal_d_inputs = "frames+diff"
    d = build_discriminator(cfg, 1, 0)
    seen = []
    d.temporal.net.blocks[0].register_forward_hook(lambda m, i, o: seen.append(i[0]))
    x = torch.randn(2, 8, 3, 16, 16)
    still = x[:, :1].expand(2, 8, 3, 16, 16).contiguous()
    assert d(still)["temporal"].shape == (2,)
    clip = seen[-1]  # (N, 6, T, s, s)
    assert clip.shape[1] == 6 and clip[:, 3:].abs().max() == 0
    d(x)
    assert seen[-1][:, 3:].abs().max() > 0
    with pytest.raises(Exception, match="temporal_d_inputs|temporal D inputs"):
        cfg.levels[0].temporal_d_inputs = "diff"
        cfg.validate()
