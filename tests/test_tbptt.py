"""Level 1 with truncated backpropagation (`TrainConfig.tbptt_horizon`): random windows of a
longer rollout, a no-grad prefix in chunks, gradients cut at the window start."""

import json

import pytest
import torch

from cvg_fast.config import CascadeConfig
from cvg_fast.data.random_clips import RandomClips
from cvg_fast.errors import CvgError
from cvg_fast.training import LevelTrainer
from cvg_fast.training.distributed import DistInfo
from cvg_fast.training.launch import build_parser, config_from_args

H = 20  # horizon: up to 3 no-grad chunks before the 8-frame window


def _trainer(cfg, run, rank=0):
    ds = RandomClips(cfg.levels[-1].frames, cfg.levels[-1].size, 2, 8)
    return LevelTrainer(cfg, 1, ds, run, None, DistInfo(rank=rank), progress=False)


def _spy(monkeypatch, G):
    """Record every call of G.forward: (z, y, frames, frame_noise, state, return_state)."""
    calls, real = [], G.forward

    def spy(z, y=None, frames=None, frame_noise=None, state=None, return_state=False):
        calls.append(dict(z=z, y=y, frames=frames, e=frame_noise, state=state,
                          return_state=return_state))
        return real(z, y, frames=frames, frame_noise=frame_noise, state=state,
                    return_state=return_state)

    monkeypatch.setattr(G, "forward", spy)
    return calls


def _split(calls, t):
    """(prefix calls, window call, s) of one fake(): the prefix returns states, the window not."""
    *prefix, window = calls
    assert all(c["return_state"] for c in prefix) and not window["return_state"]
    assert window["frames"] == t
    assert all(1 <= c["frames"] <= t for c in prefix)  # chunks no longer than the window
    return prefix, window, sum(c["frames"] for c in prefix)


@pytest.fixture
def tb_cfg(tiny_cfg):
    tiny_cfg.train.tbptt_horizon = H
    return tiny_cfg


def test_window_is_frames_s_to_s_plus_t_of_one_rollout(tb_cfg, tmp_path, monkeypatch):
    tr = _trainer(tb_cfg, tmp_path)
    tr.G.eval()  # BN on standing statistics: chunking must not change the video
    t = tb_cfg.levels[0].frames
    calls = _spy(monkeypatch, tr.G)
    y = torch.tensor([0, 1, 1])
    starts = []
    for step in range(8):
        tr.step = step
        calls.clear()
        with torch.no_grad():
            out = tr.pairs.fake(tr.G, y, 3, tr.batch_random("step", 3), None)
        prefix, window, s = _split(calls, t)
        starts.append(s)
        assert out.shape[1] == t  # D always judges T frames
        z = calls[0]["z"]
        assert all(torch.equal(c["z"], z) for c in calls)  # one video: one content code
        e = torch.cat([c["e"] for c in calls], dim=1)  # the rollout's noise, frame by frame
        assert e.shape[1] == s + t
        # the start from the batch-wide generator, then one draw per video for the whole
        # rollout, so the window's noise continues the prefix's: frame k's noise does not
        # depend on the split
        rnd = tr.batch_random("step", 3)
        assert int(torch.randint(0, H + 1, (), generator=rnd.shared)) == s
        torch.testing.assert_close(e, rnd.randn(*e.shape), rtol=0, atol=0)
        with torch.no_grad():
            full = tr.G(z, y, frames=s + t, frame_noise=e)
        torch.testing.assert_close(out, full[:, s:], atol=1e-5, rtol=1e-5)
    assert min(starts) >= 0 and max(starts) <= H
    assert len(set(starts)) > 3 and max(starts) > t  # random, and past one chunk


def test_gradient_reaches_g_but_stops_at_the_window_start(tb_cfg, tmp_path, monkeypatch):
    tr = _trainer(tb_cfg, tmp_path)
    tr.G.eval()  # deterministic forward, so the three backward passes compare
    t = tb_cfg.levels[0].frames
    calls = _spy(monkeypatch, tr.G)
    y = torch.tensor([0, 1])
    for step in range(50):  # a step whose window starts past frame 0
        tr.step = step
        calls.clear()
        tr.G.zero_grad(set_to_none=True)
        out = tr.pairs.fake(tr.G, y, 2, tr.batch_random("step", 2), None)
        prefix, window, s = _split(calls, t)
        if s > 0:
            break
    assert s > 0
    assert all(not h.requires_grad and h.grad_fn is None for h in window["state"])
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * weight).sum().backward()
    params = [p for p in tr.G.parameters() if p.requires_grad]
    got = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]
    assert sum(float(g.abs().sum()) for g in got) > 0
    gru = [p for n, p in tr.G.named_parameters() if n.startswith("grus.")]
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in gru)

    z = calls[0]["z"]
    e = torch.cat([c["e"] for c in calls], dim=1)

    def grads(detach: bool):
        tr.G.zero_grad(set_to_none=True)
        _, state = tr.G(z, y, frames=s, frame_noise=e[:, :s], return_state=True)
        if detach:
            state = [h.detach() for h in state]
        w = tr.G(z, y, frames=t, frame_noise=e[:, s:], state=state)
        (w * weight).sum().backward()
        return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]

    truncated, full = grads(True), grads(False)
    for a, b in zip(got, truncated):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    # backpropagating through the prefix would change G's gradient
    assert max(float((a - b).abs().max()) for a, b in zip(got, full)) > 1e-4


def test_window_starts_agree_across_ranks_noise_does_not(tb_cfg, tmp_path, monkeypatch):
    """Every process must run the same number of no-grad chunks (synchronised BN makes one
    collective per call): starts are keyed without the rank, the noise with it."""
    seen = {}
    for rank in (0, 1):
        tr = _trainer(tb_cfg, tmp_path / str(rank), rank=rank)
        calls = _spy(monkeypatch, tr.G)
        batch = next(iter(torch.utils.data.DataLoader(
            tr.dataset, batch_size=4, sampler=[(i, i) for i in range(4)])))
        starts, zs = [], []
        for step in range(2):
            tr.step = step
            calls.clear()
            logs = tr.train_step(batch)  # D's no-grad sample, then G's sample with grad
            assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
            i = 0
            while i < len(calls):  # split the step's calls into fakes
                j = i
                while calls[j]["return_state"]:
                    j += 1
                starts.append(sum(c["frames"] for c in calls[i:j]))
                zs.append(calls[i]["z"])
                i = j + 1
        seen[rank] = (starts, zs)
    assert seen[0][0] == seen[1][0] and len(seen[0][0]) == 4 and max(seen[0][0]) > 0
    assert not torch.equal(seen[0][1][0], seen[1][1][0])


def test_training_with_tbptt_updates_g_and_saves(tb_cfg, tmp_path):
    tb_cfg.train.steps = 2
    tb_cfg.train.checkpoint_every = tb_cfg.train.sample_every = 2
    tr = _trainer(tb_cfg, tmp_path)
    before = [p.detach().clone() for p in tr.G.parameters()]
    res = tr.run()
    assert res.steps == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.G.parameters()))
    saved = json.loads((tmp_path / "level1" / "config.json").read_text())
    assert saved["train"]["tbptt_horizon"] == H


def test_config_round_trips_and_flag(tb_cfg):
    back = CascadeConfig.from_dict(json.loads(json.dumps(tb_cfg.to_dict())))
    assert back.train.tbptt_horizon == H and back == tb_cfg
    args = build_parser().parse_args(["--level", "1", "--data", "d", "--out", "o",
                                      "--tbptt-horizon", "40"])
    assert config_from_args(args).train.tbptt_horizon == 40
    assert CascadeConfig.from_dict({**tb_cfg.to_dict(), "train": {}}).train.tbptt_horizon == 0


@pytest.mark.parametrize("value, other", [(-1, 0), ("24", 0), (2.5, 0), (True, 0), (24, 3)])
def test_bad_values_are_one_line_errors(tb_cfg, value, other):
    d = tb_cfg.to_dict()
    d["train"] |= {"tbptt_horizon": value, "rollout_offset": other}
    with pytest.raises(CvgError) as exc:
        CascadeConfig.from_dict(d)
    msg = str(exc.value)
    assert "\n" not in msg and ("tbptt_horizon" in msg)
