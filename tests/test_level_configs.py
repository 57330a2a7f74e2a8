"""Each level is built and driven from the config it was trained with; mismatches are one line."""

import pytest
import torch

from cvg_fast.errors import CvgError
from cvg_fast.models import video_noise
from cvg_fast.models.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from cvg_fast.sampling import generate, load_cascade
from test_training import _trainer


def _train(cfg, level, run, **overrides):
    c = cfg.copy()
    c.train.steps = 1
    for key, value in overrides.items():
        obj = c.levels[level - 1] if key in ("window", "g_ch", "d_ch") else c
        setattr(obj, key, value)
    _trainer(c.validate(), level, run).run()
    return c


def test_overrides_of_one_level_do_not_leak_into_another(tiny_cfg, tmp_path):
    """Level 1 with --z-dim 16 --z-t-dim 0 (the paper's generator), level 2 with the preset's
    z sizes and --z-ch 3 --window 2: training level 2, loading and generating all drive
    level 1 with ITS config (the old code fed level 1 the top level's z_dim: a shape error)."""
    c1 = _train(tiny_cfg, 1, tmp_path, z_dim=16, z_t_dim=0)
    c2 = _train(tiny_cfg, 2, tmp_path, z_ch=3, window=2)
    assert (c2.z_dim, c2.z_t_dim) != (c1.z_dim, c1.z_t_dim)
    cascade = load_cascade(tmp_path, device="cpu")
    assert cascade.level_cfg(1).z_dim == 16 and cascade.level_cfg(1).z_t_dim == 0
    assert cascade.level_cfg(2).z_ch == 3 and cascade.level_cfg(2).window(2) == 2
    seen = []
    videos = generate(cascade, num_videos=2, frames=40, seed=5, progress=False)
    assert videos.shape == (2, 40, 32, 32, 3)
    # level 1 of the cascade is exactly level 1 alone, driven by its own z (16 values)
    low = generate(cascade, num_videos=2, frames=10, seed=5, levels=1, progress=False,
                   amp="none")
    with torch.no_grad():
        alone = cascade.generators[0](video_noise(5, [0, 1], 16), torch.tensor([0, 1]), 10)
    want = ((alone.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 1, 3, 4, 2)
    assert torch.equal(torch.from_numpy(low), want)
    # windows of 2 input frames at level 2 (its own window, not the preset's 4)
    list(cascade.stream(video_noise(0, [0], 16), torch.tensor([0]), 8,
                        lambda lv, a, b, shape: torch.zeros(1, b - a, *shape),
                        on_window=lambda lv, x, y: seen.append(x.shape[1])))
    assert seen and set(seen) == {2}


def test_frame_stride_mismatch_is_one_line_naming_both(tiny_cfg, tmp_path):
    _train(tiny_cfg, 1, tmp_path, frame_stride=2)
    with pytest.raises(CvgError) as e:
        _train(tiny_cfg, 2, tmp_path, frame_stride=1)
    msg = str(e.value)
    assert "\n" not in msg and "frame stride 1" in msg and "with 2" in msg


def test_load_cascade_checks_every_level_against_the_ones_below(tiny_cfg, tmp_path):
    _train(tiny_cfg, 1, tmp_path)
    _train(tiny_cfg, 2, tmp_path)
    load_cascade(tmp_path, device="cpu")
    path = checkpoint_path(tmp_path, 2)
    state = load_checkpoint(path)
    state["config"]["levels"][0]["frames"] = 4  # level 2 "trained" on another level 1
    save_checkpoint(path, {k: v for k, v in state.items() if k != "format"})
    with pytest.raises(CvgError) as e:
        load_cascade(tmp_path, device="cpu")
    msg = str(e.value)
    assert "\n" not in msg and "8 frames" in msg and "4 frames" in msg
    state["config"]["levels"][0]["frames"] = 8
    state["config"]["frame_stride"] = 3
    save_checkpoint(path, {k: v for k, v in state.items() if k != "format"})
    with pytest.raises(CvgError, match="frame stride 3"):
        load_cascade(tmp_path, device="cpu")


def test_weights_of_another_architecture_are_a_one_line_error(tiny_cfg, tmp_path):
    _train(tiny_cfg, 1, tmp_path)
    path = checkpoint_path(tmp_path, 1)
    state = load_checkpoint(path)
    state["config"]["z_dim"] = 12  # the config no longer describes the saved weights
    save_checkpoint(path, {k: v for k, v in state.items() if k != "format"})
    with pytest.raises(CvgError) as e:
        load_cascade(tmp_path, device="cpu")
    assert "\n" not in str(e.value) and "retrain" in str(e.value)
