"""Channels-last activations: one (N, T, H, W, C) order through every model, folds as views.

What must hold: with `set_channels_last(model)` every convolution of the generators and
discriminators receives channels_last frames (4D) or channels_last_3d clips (5D), without
the model copying between them; the outputs are the same as in the contiguous layout; with
the layout off every conv input is plainly contiguous.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import narrow_tiny

from cvg_fast.models import build_discriminator, build_generator
from cvg_fast.nn import SNConv2d, SNConv3d, spectral_norm_step
from cvg_fast.nn.layout import (
    cat_channels, clip_channels_last, frames_channels_last, is_video_channels_last, layout_name,
    set_channels_last, uses_channels_last, video_channels_last,
)
from cvg_fast.nn.resblocks import _downsample
from cvg_fast.ops import backends


def test_folds_of_a_channels_last_video_are_views():
    v = video_channels_last(torch.randn(2, 3, 8, 5, 6))
    assert is_video_channels_last(v) and layout_name(v) == "video_channels_last"
    assert video_channels_last(v).data_ptr() == v.data_ptr()  # already: no copy
    frames = v.reshape(6, 8, 5, 6)
    clip = v.transpose(1, 2)
    assert frames.data_ptr() == v.data_ptr() and layout_name(frames) == "channels_last"
    assert layout_name(clip) == "channels_last_3d"
    assert frames_channels_last(frames).data_ptr() == frames.data_ptr()
    assert clip_channels_last(clip).data_ptr() == clip.data_ptr()
    with pytest.raises(ValueError, match="expected a video"):
        video_channels_last(torch.randn(2, 3, 4, 4))


def test_cat_channels_keeps_the_order_and_the_values():
    a, b = torch.randn(2, 3, 4, 5, 5), torch.randn(2, 3, 2, 5, 5)
    out = cat_channels([video_channels_last(a), b])
    assert is_video_channels_last(out)
    torch.testing.assert_close(out, torch.cat([a, b], dim=2), rtol=0, atol=0)


@pytest.mark.parametrize("t", [1, 2, 3, 4, 5])
def test_clip_pooling_keeps_channels_last_3d(t):
    """avg_pool3d returns contiguous for channels_last_3d input: the blocks pool frames and
    frame pairs instead; same values, ceil mode for odd T included."""
    x = torch.randn(2, 4, t, 8, 6)
    ref = F.avg_pool3d(x, (2 if t >= 2 else 1, 2, 2), ceil_mode=True)
    out = _downsample(clip_channels_last(x))
    assert out.shape == ref.shape and layout_name(out) in ("channels_last_3d", "contiguous")
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)


def _conv_input_layouts(models, run):
    """{layout name} of every SNConv2d/3d input while `run()` executes (1x1 spatial and
    single-channel inputs are both layouts at once: reported as ambiguous)."""
    seen = []

    def hook(mod, inp):
        x = inp[0]
        ambiguous = x.shape[1] == 1 or x.shape[-1] * x.shape[-2] == 1
        seen.append("ambiguous" if ambiguous else layout_name(x))

    handles = [m.register_forward_pre_hook(hook) for model in models for m in model.modules()
               if isinstance(m, (SNConv2d, SNConv3d))]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return set(seen)


def _models(level):
    cfg = narrow_tiny()
    torch.manual_seed(0)
    return cfg, build_generator(cfg, level, 2), build_discriminator(cfg, level, 2)


def _inputs(cfg, level, n=2):
    g = torch.Generator().manual_seed(1)
    lv = cfg.levels[level - 1]
    y = torch.tensor([0, 1])[:n]
    if level == 1:
        lv = cfg.levels[0]
        return dict(z=torch.randn(n, cfg.z_dim, generator=g), y=y, frames=None,
                    frame_noise=torch.randn(n, lv.frames, cfg.z_t_dim, generator=g)), None
    prev = cfg.levels[level - 2]
    t_in = cfg.window(level)
    x_low = torch.rand(n, t_in, 3, prev.size, prev.size, generator=g) * 2 - 1
    noise = torch.randn(n, t_in * cfg.t_factor(level), cfg.z_ch, prev.size, prev.size, generator=g)
    return dict(x=x_low, noise=noise, y=y), x_low


def _run(G, D, inputs, x_low):
    with spectral_norm_step(G), spectral_norm_step(D):
        video = G(*inputs.values())
        gen = torch.Generator().manual_seed(2)
        scores = D(video, x_low, inputs["y"], gen)
    return video, scores


@pytest.mark.parametrize("level", [1, 2])
def test_every_conv_sees_channels_last_and_outputs_agree(level):
    backends.set_backend("reference")
    try:
        cfg, G0, D0 = _models(level)
        inputs, x_low = _inputs(cfg, level)
        out = {}
        for cl in (False, True):
            # fresh copies: a training-mode forward moves the power iteration's u, v
            G, D = copy.deepcopy(G0), copy.deepcopy(D0)
            set_channels_last(G, cl)
            set_channels_last(D, cl)
            assert uses_channels_last(G) == cl and uses_channels_last(D) == cl
            res = {}

            def run():
                res["video"], res["scores"] = _run(G, D, inputs, x_low)

            layouts = _conv_input_layouts((G, D), run)
            # contiguous mode: the clips are transposed views, as before this layout existed
            want = {"channels_last", "channels_last_3d"} if cl else {"contiguous", "strided"}
            assert layouts - {"ambiguous"} <= want, f"channels_last={cl}: conv inputs {layouts}"
            assert layouts & want, "no conv input seen"
            video = res["video"]
            if cl and level == 1:
                assert is_video_channels_last(video)
            loss = video.float().square().mean() + sum(s.float().mean() for s in
                                                       res["scores"].values())
            loss.backward()
            grads = [p.grad.clone() for p in list(G.parameters()) + list(D.parameters())
                     if p.grad is not None]
            out[cl] = (video.detach(), grads)
        torch.testing.assert_close(out[True][0], out[False][0], atol=2e-5, rtol=1e-4)
        assert len(out[True][1]) == len(out[False][1]) > 10
        for a, b in zip(out[True][1], out[False][1]):
            torch.testing.assert_close(a, b, atol=2e-4, rtol=2e-3)
    finally:
        backends.set_backend(None)
