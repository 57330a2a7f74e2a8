"""Greedy training: frozen lower levels, window shapes, resume, checkpoints, losses."""

import json
import shutil

import pytest
import torch

from cvg_fast.data.random_clips import RandomClips as _RandomClips
from cvg_fast.errors import CvgError
from cvg_fast.models.checkpoint import checkpoint_path, load_checkpoint
from cvg_fast.training import LevelTrainer, train_level
from cvg_fast.training.distributed import DistInfo
from cvg_fast.training.losses import d_loss, g_loss
from cvg_fast.training.pairs import PairMaker


def RandomClips(frames, size, num_classes=2, n=8):
    """In-memory stand-in for VideoFolder: (index, seed) -> a seeded random top-level clip."""
    return _RandomClips(frames, size, num_classes, n)


def _ds(cfg):
    return RandomClips(cfg.levels[-1].frames, cfg.levels[-1].size)


def _trainer(cfg, level, run, **kw):
    return LevelTrainer(cfg, level, _ds(cfg), run, None, DistInfo(), progress=False, **kw)


def test_losses_signs():
    real = {"a": torch.tensor([2.0, 2.0]), "b": torch.tensor([[3.0, 3.0]])}
    fake = {"a": torch.tensor([-2.0, -2.0]), "b": torch.tensor([[-3.0, -3.0]])}
    assert float(d_loss(real, fake, "hinge")[0]) == 0.0
    assert float(d_loss(fake, real, "hinge")[0]) == pytest.approx((3 + 3) + (4 + 4))
    assert float(g_loss(fake, "hinge")[0]) == pytest.approx(2.0 + 3.0)
    assert float(d_loss(real, fake, "ns")[0]) < float(d_loss(fake, real, "ns")[0])


def test_level2_never_backpropagates_into_level1(tiny_cfg, tmp_path):
    tiny_cfg.train.steps = 1
    tiny_cfg.train.checkpoint_every = 1
    _trainer(tiny_cfg, 1, tmp_path).run()
    before = load_checkpoint(checkpoint_path(tmp_path, 1))["G"]
    tr = _trainer(tiny_cfg, 2, tmp_path)
    lower = tr.lower.generators[0]
    assert not any(p.requires_grad for p in lower.parameters())
    assert not lower.training
    batch = next(iter(torch.utils.data.DataLoader(
        tr.dataset, batch_size=4, sampler=[(i, i) for i in range(4)])))
    tr.train_step(batch)
    assert all(p.grad is None for p in lower.parameters())
    assert any(p.grad is not None for p in tr.G.parameters())
    for k, v in lower.state_dict().items():  # weights and BN/SN buffers untouched
        torch.testing.assert_close(v, before[k], msg=k)


def test_window_training_shapes(tiny_cfg, tmp_path):
    tiny_cfg.train.steps = 1
    _trainer(tiny_cfg, 1, tmp_path).run()
    tr = _trainer(tiny_cfg, 2, tmp_path)
    g = tr.batch_random("step", 3)
    top = tiny_cfg.levels[-1]
    video = torch.rand(3, top.frames, 3, top.size, top.size)
    high, low = tr.pairs.real_pair(video, g)
    w, tf = tiny_cfg.window(2), tiny_cfg.t_factor(2)
    assert high.shape == (3, w * tf, 3, 32, 32) and low.shape == (3, w, 3, 16, 16)
    # the real pair is aligned: low == pyramid(high) for the same window
    from cvg_fast.ops import downsample_to

    torch.testing.assert_close(downsample_to(high, w, 16), low)
    fake_low = tr.pairs.fake_input(None if tr.num_classes == 0 else torch.tensor([0, 1, 0]), 3, g)
    assert fake_low.shape == (3, w, 3, 16, 16)
    # take() gathers per-video windows
    x = torch.arange(10.0).view(1, 10, 1, 1, 1).repeat(2, 1, 1, 1, 1)
    got = PairMaker.take(x, torch.tensor([1, 6]), 3)
    assert got[:, :, 0, 0, 0].tolist() == [[1, 2, 3], [6, 7, 8]]


def _losses(run, level):
    with open(run / f"level{level}" / "log.jsonl") as f:
        return {r["step"]: (r["loss_d"], r["loss_g"]) for r in map(json.loads, f)}


@pytest.mark.parametrize("level", [1, 2])
def test_resume_replays_the_same_steps(tiny_cfg, tmp_path, level):
    base = tmp_path / "base"
    if level == 2:
        tiny_cfg.train.steps = 1
        _trainer(tiny_cfg, 1, base).run()
    for d in ("straight", "resumed"):
        shutil.copytree(base, tmp_path / d) if base.exists() else (tmp_path / d).mkdir()
    tiny_cfg.train.steps = 4
    tiny_cfg.train.checkpoint_every = 100
    _trainer(tiny_cfg, level, tmp_path / "straight").run()
    tiny_cfg.train.steps = 2
    _trainer(tiny_cfg, level, tmp_path / "resumed").run()
    assert load_checkpoint(checkpoint_path(tmp_path / "resumed", level))["step"] == 2
    tiny_cfg.train.steps = 4
    _trainer(tiny_cfg, level, tmp_path / "resumed", resume=True).run()
    a, b = _losses(tmp_path / "straight", level), _losses(tmp_path / "resumed", level)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    for step in (3, 4):
        assert a[step] == pytest.approx(b[step], rel=1e-5, abs=1e-6), step
    ga = load_checkpoint(checkpoint_path(tmp_path / "straight", level))["G"]
    gb = load_checkpoint(checkpoint_path(tmp_path / "resumed", level))["G"]
    for k in ga:
        torch.testing.assert_close(ga[k], gb[k], rtol=1e-5, atol=1e-6, msg=k)


def test_existing_checkpoint_needs_resume_or_overwrite(tiny_cfg, tmp_path):
    tiny_cfg.train.steps = 1
    _trainer(tiny_cfg, 1, tmp_path).run()
    with pytest.raises(CvgError, match="--resume"):
        _trainer(tiny_cfg, 1, tmp_path)
    with pytest.raises(CvgError, match="no checkpoint"):
        _trainer(tiny_cfg, 1, tmp_path / "other", resume=True)
    _trainer(tiny_cfg, 1, tmp_path, overwrite=True)


def test_level_without_lower_levels_is_a_clear_error(tiny_cfg, tmp_path):
    with pytest.raises(CvgError, match="level 2 needs the trained level 1"):
        _trainer(tiny_cfg, 2, tmp_path)


def test_checkpoint_write_is_atomic(tiny_cfg, tmp_path, monkeypatch):
    tiny_cfg.train.steps = 1
    tr = _trainer(tiny_cfg, 1, tmp_path)
    tr.run()
    good = checkpoint_path(tmp_path, 1).read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        tr.save()
    assert checkpoint_path(tmp_path, 1).read_bytes() == good  # old checkpoint intact
    assert [p.name for p in (tmp_path / "level1").iterdir() if p.name.endswith(".tmp")] == []


def test_checkpoint_loads_weights_only_and_rejects_garbage(tmp_path):
    bad = tmp_path / "level1" / "checkpoint.pt"
    bad.parent.mkdir()
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CvgError, match="not a readable cvg-fast checkpoint"):
        load_checkpoint(bad)


def test_train_level_on_real_video_files(tiny_cfg, synth_data, tmp_path):
    tiny_cfg.train.steps = 2
    tiny_cfg.train.checkpoint_every = 2
    tiny_cfg.train.sample_every = 2
    r = train_level(tiny_cfg, 1, synth_data, tmp_path, progress=False)
    assert r.steps == 2
    state = load_checkpoint(checkpoint_path(tmp_path, 1))
    assert state["num_classes"] == 2 and state["step"] == 2
    assert (tmp_path / "level1" / "samples" / "step0000002.png").is_file()
    import av

    with av.open(str(tmp_path / "level1" / "samples" / "step0000002.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 8 and frames[0].shape[0] == 16  # level-1 length and size, tiled
    assert (tmp_path / "level1" / "config.json").is_file()


def test_level1_rollout_offset_shows_d_the_last_frames(tiny_cfg, tmp_path, monkeypatch):
    tiny_cfg.train.tbptt_horizon = 0  # the other way past the horizon: one at a time
    tiny_cfg.train.rollout_offset = 5
    tr = _trainer(tiny_cfg, 1, tmp_path)
    lengths = []
    real_forward = tr.G.forward

    def spy(z, y=None, frames=None, frame_noise=None):
        lengths.append(frames)
        return real_forward(z, y, frames=frames, frame_noise=frame_noise)

    monkeypatch.setattr(tr.G, "forward", spy)
    for step in range(12):
        tr.step = step
        out = tr.pairs.fake(tr.G, None if tr.num_classes == 0 else torch.tensor([0, 1]), 2,
                            tr.batch_random("step", 2), None)
        assert out.shape[1] == tiny_cfg.levels[0].frames  # D always sees T frames
    assert set(lengths) <= set(range(8, 14)) and len(set(lengths)) > 1


@pytest.mark.parametrize("d_steps", [1, 2])
def test_generator_power_iteration_runs_once_per_step(tiny_cfg, tmp_path, monkeypatch, d_steps):
    """G's weights only change at its own update: one power iteration per layer per step,
    whatever d_steps (it ran d_steps + 1 times: G is in train mode for D's no-grad samples)."""
    import cvg_fast.nn.spectral_norm as sn
    from cvg_fast.nn.spectral_norm import SpectralNormMixin

    tiny_cfg.train.d_steps = d_steps
    tr = _trainer(tiny_cfg, 1, tmp_path)
    g_layers = {id(m.sn_u) for m in tr.G.modules() if isinstance(m, SpectralNormMixin)}
    counts = {"G": 0, "D": 0}
    original = sn.sn_normalize

    def counted(weight, u, v, update, **kw):  # the one op every SN layer's iteration runs in
        if update:
            counts["G" if id(u) in g_layers else "D"] += 1
        return original(weight, u, v, update, **kw)

    monkeypatch.setattr(sn, "sn_normalize", counted)
    batch = next(iter(torch.utils.data.DataLoader(
        tr.dataset, batch_size=4, sampler=[(i, i) for i in range(4)])))
    tr.train_step(batch)
    assert counts["G"] == len(g_layers)
    d_layers = sum(isinstance(m, SpectralNormMixin) for m in tr.D.modules())
    assert counts["D"] == d_layers * (d_steps + 1)  # each D update, and D's pass for G's loss


class _SlowClips(_RandomClips):
    """RandomClips that takes `delay` seconds per item (a starved loader)."""

    delay = 0.0

    def __getitem__(self, key):
        import time

        time.sleep(self.delay)
        return super().__getitem__(key)


@pytest.mark.parametrize("delay", [0.0, 1.0])
def test_data_wait_is_logged_and_reported(tiny_cfg, tmp_path, delay):
    tiny_cfg.train.steps, tiny_cfg.train.log_every, tiny_cfg.train.num_workers = 3, 1, 0
    tiny_cfg.train.batch_size = 2
    ds = _SlowClips(tiny_cfg.levels[-1].frames, tiny_cfg.levels[-1].size, 2, 8)
    ds.delay = delay
    result = LevelTrainer(tiny_cfg, 1, ds, tmp_path, None, DistInfo(), progress=False).run()
    with open(tmp_path / "level1" / "log.jsonl") as f:
        rows = [json.loads(line) for line in f]
    shares = [r["data_wait_pct"] for r in rows if "step" in r]
    assert len(shares) == 3 and all(0 <= s <= 100 for s in shares)
    if delay:  # 2 items x 1 s per step against a tiny step (< 1 s even on a loaded machine)
        assert result.data_wait > 0.3 and max(shares) > 50
    else:
        assert result.data_wait < 0.3
