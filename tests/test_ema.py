"""EMA of G (the weights samples, evaluation and checkpoint readers use) and model selection
by an evaluation metric with early stopping (--patience)."""

import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from cvg_fast.errors import CvgError
from cvg_fast.models.checkpoint import checkpoint_path, load_cascade, load_checkpoint, load_generator
from cvg_fast.nn.spectral_norm import spectral_norm_modules
from cvg_fast.training import trainer as trainer_mod
from cvg_fast.training.ema import ema_decay_at
from cvg_fast.training.selection import evaluations_since_best, run_metric

from test_checkpoints import _batch, _trainer  # the same tiny trainer and batch


@pytest.fixture
def cfg(tiny_cfg):
    tiny_cfg.train.batch_size = 2  # the cheapest steps that still exercise BN and SN
    tiny_cfg.train.ema_decay = 0.9
    # one generator call per sample draw (TBPTT, tiny's default, adds no-grad prefix calls)
    tiny_cfg.train.tbptt_horizon = 0
    return tiny_cfg


def _params(m):
    return {k: v.detach().clone() for k, v in m.named_parameters()}


def _max_diff(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# ------------------------------------------------------------------ the average
def test_ramp():
    assert ema_decay_at(0.999, 0) == pytest.approx(0.1)
    assert ema_decay_at(0.999, 20) == pytest.approx(21 / 30)
    assert ema_decay_at(0.999, 10**6) == 0.999
    assert ema_decay_at(0.5, 100) == 0.5


def test_ema_follows_the_formula_and_differs_from_raw(cfg, tmp_path):
    tr = _trainer(cfg, tmp_path)
    batch = _batch(tr)
    assert tr.sampler is tr.ema.model and not tr.ema.model.training
    assert _max_diff(_params(tr.G), _params(tr.ema.model)) == 0  # starts as G
    tr.step = 20  # decay_t = min(0.9, 21 / 30) = 0.7
    before = _params(tr.ema.model)
    sn_before = {id(m): (m.sn_u.clone(), m.sn_v.clone())
                 for m in spectral_norm_modules(tr.ema.model)}
    bn_before = {k: v.clone() for k, v in tr.ema.model.named_buffers() if "running" in k}
    tr.train_step(batch)
    raw, ema = _params(tr.G), _params(tr.ema.model)
    assert _max_diff(raw, before) > 1e-4  # G moved
    for k in ema:  # p_ema = 0.7 p_ema + 0.3 p, in float64
        want = (0.7 * before[k].double() + 0.3 * raw[k].double()).float()
        torch.testing.assert_close(ema[k], want, rtol=1e-6, atol=1e-7, msg=k)
    for m in spectral_norm_modules(tr.ema.model):  # one power iteration on the EMA weights
        u0, v0 = sn_before[id(m)]
        w = m.weight.detach().float().flatten(1)
        u = F.normalize(w @ v0, dim=0, eps=1e-12)
        torch.testing.assert_close(m.sn_u, u)
        torch.testing.assert_close(m.sn_v, F.normalize(w.t() @ u, dim=0, eps=1e-12))
    for k, v in tr.ema.model.named_buffers():  # BN statistics: recalibrated, not averaged
        if k in bn_before:
            assert torch.equal(v, bn_before[k]), k
    for step in range(21, 24):
        tr.step = step
        tr.train_step(batch)
    assert _max_diff(_params(tr.G), _params(tr.ema.model)) > 1e-4


def test_a_skipped_step_leaves_the_ema_alone(cfg, tmp_path, monkeypatch):
    tr = _trainer(cfg, tmp_path)
    batch = _batch(tr)
    tr.train_step(batch)
    tr.step = 1
    before = {k: v.clone() for k, v in tr.ema.state_dict().items()}
    real = trainer_mod.d_loss
    monkeypatch.setattr(trainer_mod, "d_loss",
                        lambda *a, **k: (lambda lp: (lp[0] * math.nan, lp[1]))(real(*a, **k)))
    assert tr.train_step(batch)["skipped_nonfinite"] == 1
    for k, v in tr.ema.state_dict().items():
        assert torch.equal(before[k], v), k


# ----------------------------------------------------------- who samples
def test_sampling_evaluation_and_load_cascade_use_the_ema(cfg, tmp_path, monkeypatch):
    cfg.train.steps, cfg.train.checkpoint_every, cfg.train.sample_every = 3, 3, 3
    seen = []
    tr = _trainer(cfg, tmp_path, eval_every=3,
                  eval_fn=lambda cascade: seen.append(cascade.generators[-1]) or {"fvd_x": 1.0})
    tr.run()
    assert seen == [tr.ema.model]  # evaluation judged the EMA generator
    state = load_checkpoint(checkpoint_path(tmp_path, 1))
    assert "G" in state and "G_ema" in state  # the raw G too, for resuming
    g = load_cascade(tmp_path, device="cpu").generators[0]
    ema, raw = tr.ema.model.state_dict(), tr.G.state_dict()
    for k, v in g.state_dict().items():  # weights AND the EMA's own standing BN statistics
        assert torch.equal(v, ema[k]), k
    assert _max_diff(_params(g), _params(tr.G)) > 1e-4
    assert any(not torch.equal(ema[k], raw[k]) for k in ema if "running_mean" in k)
    g_raw, _, _ = load_generator(tmp_path, 1, ema=False)
    for k, v in g_raw.state_dict().items():
        assert torch.equal(v, raw[k]), k

    calls = {"ema": 0, "G": 0}
    for name, net in (("ema", tr.ema.model), ("G", tr.G)):
        fwd = net.forward

        def counted(*a, _fwd=fwd, _name=name, **k):
            calls[_name] += 1
            return _fwd(*a, **k)

        monkeypatch.setattr(net, "forward", counted)
    path = tr.write_samples()  # standing statistics of this step exist: no recalibration
    assert path.is_file() and calls == {"ema": 1, "G": 0}


def test_ema_decay_zero_is_the_raw_generator(cfg, tmp_path):
    cfg.train.ema_decay = 0.0
    cfg.train.steps = 2
    tr = _trainer(cfg, tmp_path)
    tr.run()
    assert tr.ema is None and tr.sampler is tr.G
    state = load_checkpoint(checkpoint_path(tmp_path, 1))
    assert "G_ema" not in state
    g, _, _ = load_generator(tmp_path, 1)
    for k, v in g.state_dict().items():
        assert torch.equal(v, tr.G.state_dict()[k]), k


def test_resume_continues_the_ema_bit_exactly(cfg, tmp_path):
    cfg.train.checkpoint_every = 100
    cfg.train.steps = 4
    _trainer(cfg, tmp_path / "straight").run()
    cfg.train.steps = 2
    _trainer(cfg, tmp_path / "resumed").run()
    cfg.train.steps = 4
    _trainer(cfg, tmp_path / "resumed", resume=True).run()
    a = load_checkpoint(checkpoint_path(tmp_path / "straight", 1))
    b = load_checkpoint(checkpoint_path(tmp_path / "resumed", 1))
    assert a["step"] == b["step"] == 4
    for k, v in a["G_ema"].items():
        assert torch.equal(v, b["G_ema"][k]), k
    assert any(not torch.equal(v, a["G"][k]) for k, v in a["G_ema"].items())


def test_resuming_a_run_without_ema_starts_the_average_from_g(cfg, tmp_path):
    cfg.train.ema_decay, cfg.train.steps = 0.0, 1
    _trainer(cfg, tmp_path).run()
    cfg.train.ema_decay = 0.9
    tr = _trainer(cfg, tmp_path, resume=True)
    for k, v in tr.G.state_dict().items():
        assert torch.equal(v, tr.ema.state_dict()[k]), k


# ------------------------------------------------------ model selection
def _scripted(values):
    it = iter(values)
    return lambda cascade: {"fvd_synth": next(it)}


def _log(run):
    with open(run / "level1" / "log.jsonl") as f:
        return [json.loads(line) for line in f]


def test_best_pt_is_the_best_step_and_patience_stops_the_run(cfg, tmp_path, capsys):
    cfg.train.steps, cfg.train.patience = 10, 2
    tr = _trainer(cfg, tmp_path, eval_every=1, eval_fn=_scripted([5.0, 3.0, 4.0, 3.5, 1.0]))
    result = tr.run()
    # best at step 2 (3.0); steps 3 and 4 do not beat it: the second one stops the run
    assert result.steps == 4 and result.stopped_early
    best = json.loads((tmp_path / "level1" / "best.json").read_text())
    assert (best["step"], best["value"], best["metric"]) == (2, 3.0, "fvd_synth")
    kept = load_checkpoint(tmp_path / "level1" / "best.pt")
    assert kept["step"] == 2 and "G_ema" in kept
    assert load_checkpoint(checkpoint_path(tmp_path, 1))["step"] == 4  # final checkpoint
    assert (tmp_path / "level1" / "samples" / "step0000004.png").is_file()
    out = capsys.readouterr().out
    assert out.count("stopping early at step 4") == 1 and "best 3 at step 2" in out
    assert [r["early_stop"]["step"] for r in _log(tmp_path) if "early_stop" in r] == [4]


def test_patience_zero_never_stops_and_best_follows_the_metric(cfg, tmp_path):
    cfg.train.steps, cfg.train.patience = 4, 0
    tr = _trainer(cfg, tmp_path, eval_every=1, eval_fn=_scripted([5.0, 6.0, 7.0, 4.0]))
    result = tr.run()
    assert result.steps == 4 and not result.stopped_early
    assert tr.ckpts.best()["step"] == 4


def test_patience_needs_evaluations(cfg, tmp_path):
    cfg.train.patience = 3
    with pytest.raises(CvgError, match="--patience 3 counts evaluations: pass --eval-every"):
        _trainer(cfg, tmp_path)


def test_run_metric_direction_and_resumable_count():
    assert run_metric({"step": 5, "fvdsynth_16f": 3.0, "eval_seconds": 1}) == \
        ("fvdsynth_16f", 3.0, True)
    assert run_metric({"step": 5, "issynth": 2.0}) == ("issynth", 2.0, False)
    assert run_metric({"step": 5}) == (None, None, True)
    best = {"metric": "fvd", "step": 200}
    assert evaluations_since_best(500, 100, best, "fvd") == 3  # evaluations at 300, 400, 500
    assert evaluations_since_best(500, 100, best, "other") == 5
    assert evaluations_since_best(500, 100, None, "fvd") == 5
