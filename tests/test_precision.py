"""Precision and layout settings: the device's fastest by default, the user's word otherwise;
the flags of train/level.py and `cvg generate`; spectral norm's weight copies."""

import pytest
import torch

from cvg_fast.errors import CvgError
from cvg_fast.nn import SNConv2d, spectral_norm_step
from cvg_fast.nn import precision as P
from cvg_fast.training.launch import build_parser, config_from_args


@pytest.fixture
def cpu_flags(monkeypatch):
    def set_flags(*flags):
        monkeypatch.setattr(P, "cpu_flags", lambda: frozenset(flags))
    return set_flags


def test_auto_picks_bf16_only_where_the_cpu_has_it(cpu_flags):
    cpu_flags("avx2", "avx512f", "avx512_bf16")
    s = P.resolve_precision("cpu")
    assert (s.amp, s.channels_last) == ("bf16", True)
    assert "AVX512_BF16" in s.describe() and "auto-picked" in s.describe()
    # training level 1 stays fp32 (bf16 cost it quality); upscaling levels take bf16
    assert P.resolve_precision("cpu", level=1).amp == "none"
    assert P.resolve_precision("cpu", level=2).amp == "bf16"
    assert P.resolve_precision("cpu", "bf16", level=1).amp == "bf16"  # asked for: kept
    cpu_flags("avx2", "avx512f")
    s = P.resolve_precision("cpu")
    assert (s.amp, s.channels_last) == ("none", True)
    assert "emulated" in s.describe()


def test_explicit_settings_are_kept(cpu_flags):
    cpu_flags("avx2")
    s = P.resolve_precision("cpu", "bf16", False)
    assert (s.amp, s.channels_last) == ("bf16", False) and "as asked" in s.describe()
    assert P.resolve_precision("cpu", "none", True).amp == "none"
    with pytest.raises(CvgError, match="unknown amp mode 'fp16'"):
        P.resolve_precision("cpu", "fp16")


def test_training_flags_reach_the_config():
    p = build_parser()
    base = ["--level", "1", "--data", "d", "--out", "o"]
    cfg = config_from_args(p.parse_args(base))
    assert cfg.train.amp == "auto" and cfg.train.channels_last is None
    cfg = config_from_args(p.parse_args(base + ["--amp", "none", "--no-channels-last"]))
    assert cfg.train.amp == "none" and cfg.train.channels_last is False
    cfg = config_from_args(p.parse_args(base + ["--amp", "bf16", "--channels-last"]))
    assert cfg.train.amp == "bf16" and cfg.train.channels_last is True
    with pytest.raises(SystemExit):
        p.parse_args(base + ["--amp", "fp16"])


def test_generate_flags_parse():
    from cvg_fast.cli import build_parser as cli_parser

    args = cli_parser().parse_args(["generate", "run", "--out", "o", "--amp", "none",
                                    "--no-channels-last"])
    assert args.amp == "none" and args.channels_last is False
    args = cli_parser().parse_args(["generate", "run", "--out", "o"])
    assert args.amp == "auto" and args.channels_last is None


def test_sn_weight_cast_and_reordered_once_per_step():
    """Under autocast inside a spectral_norm_step block a conv gets W/sigma in bf16 and in its
    input's channels-last format, the same tensor at every call; a no-grad call never hands
    its (graph-less) copy to a grad call."""
    torch.manual_seed(0)
    conv = SNConv2d(4, 6, 3, padding=1)
    x = torch.randn(2, 4, 5, 5).contiguous(memory_format=torch.channels_last)
    with spectral_norm_step(conv), torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            w0 = conv.compute_weight(x)
        w1, w2 = conv.compute_weight(x), conv.compute_weight(x)
        assert w1 is w2 and w1 is not w0
        assert w1.dtype == torch.bfloat16 and w1.is_contiguous(memory_format=torch.channels_last)
        assert w1.grad_fn is not None and w0.grad_fn is None
        conv(x).float().sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    assert conv._sn_casts == {}  # released with the block
    # outside a block and without autocast: the plain fp32 W/sigma
    assert conv.compute_weight(x).dtype == torch.float32


def test_sn_eval_weight_cached_until_the_weight_changes():
    torch.manual_seed(0)
    conv = SNConv2d(3, 5, 3).eval()
    with torch.no_grad():
        a, b = conv.normalized_weight(), conv.normalized_weight()
        assert a is b  # cached in eval mode without grad
        conv.weight.mul_(2)  # in place (as an optimizer step or load_state_dict)
        c = conv.normalized_weight()
    assert c is not a
    torch.testing.assert_close(c, conv.compute_normalized_weight())
    conv.train()
    with torch.no_grad():
        assert conv.normalized_weight() is not conv.normalized_weight()  # training: recomputed


def test_sn_eval_cache_sees_fused_optimizer_steps():
    """torch's fused Adam updates W in place without bumping its version counter: the
    eval-mode cache must still serve the new W after a training phase (it is dropped at
    every train()/eval() switch). A stale cache once made the standing BN statistics of
    every checkpoint be computed with the weights of before training."""
    torch.manual_seed(0)
    conv = SNConv2d(3, 5, 3).eval()
    with torch.no_grad():
        before = conv.normalized_weight()
    conv.train()
    opt = torch.optim.Adam(conv.parameters(), lr=0.1, fused=True)
    conv(torch.randn(2, 3, 6, 6)).square().sum().backward()
    opt.step()
    conv.eval()
    with torch.no_grad():
        after = conv.normalized_weight()
        torch.testing.assert_close(after, conv.compute_normalized_weight())
    assert (after - before).abs().max() > 1e-3


def test_level1_generator_stays_fp32_under_autocast():
    """Level 1 (ConvGRU and all) runs fp32 under bf16 autocast: the measured bf16 level 1
    lost class identity. Same output as without autocast, bit for bit."""
    from conftest import narrow_tiny

    from cvg_fast.models import build_generator

    cfg = narrow_tiny()
    torch.manual_seed(0)
    g = build_generator(cfg, 1, 2).eval()
    z, y = torch.randn(2, cfg.z_dim), torch.tensor([0, 1])
    e = torch.randn(2, cfg.levels[0].frames, cfg.z_t_dim)
    with torch.no_grad():
        plain = g(z, y, None, e)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = g(z, y, None, e)
    assert auto.dtype == torch.float32
    assert torch.equal(auto, plain)
    # sampling (inference mode) follows autocast: bf16 convs, the same video to bf16 rounding
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        sampled = g(z, y, None, e)
    assert not torch.equal(sampled.float(), plain)
    torch.testing.assert_close(sampled.float(), plain, atol=0.05, rtol=0)
