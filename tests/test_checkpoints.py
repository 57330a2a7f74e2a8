"""Checkpoints a lab can trust: keep-last-K, checkpoint.pt = the newest, fallback past a
damaged file, the best slot, world/batch changes on resume, NaN-proof steps with
rollback, and the cross-process weight check covering buffers."""

import json
import math
import os

import pytest
import torch

from cvg_fast.data.random_clips import RandomClips
from cvg_fast.errors import CvgError
from cvg_fast.models.checkpoint import checkpoint_path, load_checkpoint
from cvg_fast.training import LevelTrainer
from cvg_fast.training import distributed as D
from cvg_fast.training import trainer as trainer_mod
from cvg_fast.training.checkpoints import CheckpointManager, resume_change
from cvg_fast.training.distributed import DistInfo


@pytest.fixture
def cfg(tiny_cfg):
    tiny_cfg.train.batch_size = 2  # the cheapest steps that still exercise BN and SN
    return tiny_cfg


def _trainer(cfg, run, **kw):
    ds = RandomClips(cfg.levels[-1].frames, cfg.levels[-1].size, 2, 8)
    return LevelTrainer(cfg, 1, ds, run, None, DistInfo(), progress=False, **kw)


def _batch(tr):
    return next(iter(torch.utils.data.DataLoader(
        tr.dataset, batch_size=tr.tc.batch_size, sampler=[(i, i) for i in range(4)])))


def _snapshot(tr):
    """Every parameter and buffer of G and D, and both optimisers' state, cloned."""
    return ({k: v.clone() for k, v in tr.G.state_dict().items()},
            {k: v.clone() for k, v in tr.D.state_dict().items()},
            [{k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()}
             for o in (tr.opt_g, tr.opt_d) for s in o.state.values()])


def _step_files(run):
    return sorted(p.name for p in (run / "level1" / "checkpoints").iterdir())


def _log(run):
    with open(run / "level1" / "log.jsonl") as f:
        return [json.loads(line) for line in f]


# ------------------------------------------------------------------ files
def test_keep_last_k_and_checkpoint_pt_is_the_newest(cfg, tmp_path, monkeypatch):
    cfg.train.steps, cfg.train.checkpoint_every = 3, 1
    cfg.train.keep_checkpoints = 2
    tr = _trainer(cfg, tmp_path)
    tr.run()
    assert _step_files(tmp_path) == ["step0000002.pt", "step0000003.pt"]
    newest = tmp_path / "level1" / "checkpoints" / "step0000003.pt"
    latest = checkpoint_path(tmp_path, 1)
    assert tr.ckpts.linked and os.path.samefile(latest, newest)  # a hard link, not a copy
    assert load_checkpoint(latest)["step"] == 3
    assert [p.name for p in (tmp_path / "level1").iterdir() if p.name.endswith(".tmp")] == []
    # a file system without hard links gets an atomic copy of the same bytes
    def no_link(*a):
        raise OSError("hard links not supported")

    monkeypatch.setattr(os, "link", no_link)
    mgr = CheckpointManager(tmp_path / "level1", keep=2)
    mgr.save(4, load_checkpoint(newest))
    monkeypatch.undo()
    assert mgr.linked is False and not os.path.samefile(latest, mgr.step_path(4))
    assert latest.read_bytes() == mgr.step_path(4).read_bytes()
    assert _step_files(tmp_path) == ["step0000003.pt", "step0000004.pt"]


def _manager_with_steps(tmp_path, steps, keep=3):
    mgr = CheckpointManager(tmp_path / "level1", keep=keep)
    for s in steps:
        mgr.save(s, {"step": s, "x": torch.arange(4096.0) + s})
    return mgr


def test_damaged_newest_falls_back_to_the_previous(tmp_path):
    mgr = _manager_with_steps(tmp_path, [10, 20, 30])
    newest = mgr.step_path(30)
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped bit in tensor data: torch.load alone accepts it
    newest.write_bytes(data)  # in place: checkpoint.pt (the same inode) is damaged too
    loaded = mgr.load_latest()
    assert loaded.step == 20 and loaded.path == mgr.step_path(20)
    assert [p for p, _ in loaded.damaged] == [newest]
    assert "CRC" in loaded.damaged[0][1]
    mgr.set_aside(loaded)
    assert (newest.parent / "step0000030.pt.damaged").is_file() and not newest.exists()
    assert load_checkpoint(mgr.latest)["step"] == 20  # generate/eval read a good file again


def test_truncated_newest_is_reported_and_resume_uses_the_previous(cfg, tmp_path):
    cfg.train.steps, cfg.train.checkpoint_every = 2, 1
    _trainer(cfg, tmp_path).run()
    newest = tmp_path / "level1" / "checkpoints" / "step0000002.pt"
    with open(newest, "r+b") as f:  # a write cut short (disk full, node lost)
        f.truncate(newest.stat().st_size // 3)
    with pytest.warns(UserWarning, match=r"step0000002\.pt: unusable \(.*\); resuming from "
                                         r"step0000001\.pt \(step 1\)") as rec:
        tr = _trainer(cfg, tmp_path, resume=True)
    assert len([w for w in rec if "unusable" in str(w.message)]) == 1  # one line, one file
    assert tr.step == 1
    assert load_checkpoint(checkpoint_path(tmp_path, 1))["step"] == 1
    tr.run()  # step 2 again, saved afresh
    assert load_checkpoint(checkpoint_path(tmp_path, 1))["step"] == 2
    assert _step_files(tmp_path) == ["step0000001.pt", "step0000002.pt",
                                     "step0000002.pt.damaged"]


def test_nothing_loadable_is_one_line_error(cfg, tmp_path):
    mgr = _manager_with_steps(tmp_path, [1, 2])
    for _, p in mgr.step_files():
        p.write_bytes(b"garbage")
    with pytest.raises(CvgError, match=r"none of the 2 checkpoints in .* loads \(newest "
                                       r"step0000002\.pt: .*\); start again with --overwrite") as e:
        _trainer(cfg, tmp_path, resume=True)
    assert "\n" not in str(e.value)


def test_overwrite_discards_the_old_runs_checkpoints_and_best(cfg, tmp_path):
    mgr = _manager_with_steps(tmp_path, [50, 60])
    mgr.save_best("fvd", 1.0, 60, {"step": 60})
    with pytest.raises(CvgError, match="--resume"):
        _trainer(cfg, tmp_path)
    _trainer(cfg, tmp_path, overwrite=True)
    assert not mgr.exists() and mgr.best() is None and not mgr.best_path.exists()


def test_save_prunes_files_of_an_abandoned_trajectory(tmp_path):
    mgr = _manager_with_steps(tmp_path, [10, 20, 30, 40], keep=2)
    assert [s for s, _ in mgr.step_files()] == [30, 40]
    mgr.save(35, {"step": 35})  # after a rollback/fallback: 40 would pass for the newest
    assert [s for s, _ in mgr.step_files()] == [30, 35]


# -------------------------------------------------------------- best slot
def test_best_slot_keeps_the_best_value(tmp_path):
    mgr = CheckpointManager(tmp_path / "level1")
    assert mgr.save_best("fvd", 30.0, 100, {"step": 100, "w": torch.ones(2)})
    assert not mgr.save_best("fvd", 31.0, 200, {"step": 200, "w": torch.zeros(2)})
    assert not mgr.save_best("fvd", math.nan, 250, {"step": 250})
    assert mgr.save_best("fvd", 12.5, 300, {"step": 300, "w": torch.full((2,), 3.0)})
    assert mgr.best() == {"metric": "fvd", "value": 12.5, "step": 300, "lower_is_better": True,
                          "file": "best.pt"}
    state = load_checkpoint(mgr.best_path)
    assert state["step"] == 300 and state["w"].tolist() == [3.0, 3.0]
    assert state["best"]["value"] == 12.5
    with pytest.warns(UserWarning, match="best by 'fvd' replaced by the first value of 'is'"):
        assert mgr.save_best("is", 2.0, 400, {"step": 400}, lower_is_better=False)
    assert not mgr.save_best("is", 1.5, 500, {"step": 500}, lower_is_better=False)
    assert mgr.save_best("is", 2.5, 600, {"step": 600}, lower_is_better=False)
    assert mgr.best()["step"] == 600


def test_trainer_save_best_writes_a_loadable_generator(cfg, tmp_path):
    tr = _trainer(cfg, tmp_path)
    tr.dir.mkdir(parents=True)
    tr.train_step(_batch(tr))
    tr.step = 1
    assert tr.save_best("fvd_synth", 5.0)
    assert not tr.save_best("fvd_synth", 6.0)
    state = load_checkpoint(tr.dir / "best.pt")
    assert state["step"] == 1 and state["best"]["metric"] == "fvd_synth"
    for k, v in tr.G.state_dict().items():
        torch.testing.assert_close(state["G"][k], v, msg=k)


# ------------------------------------------------------ world / batch size
def test_resume_with_another_split_of_the_same_global_batch_says_what_changes(tmp_path):
    state = {"world": 1, "batch_size": 4, "config": {"train": {"batch_size": 4}}}
    path = tmp_path / "step0000010.pt"
    assert resume_change(state, 1, 4, path) is None
    note = resume_change(state, 2, 2, path)
    assert "same global batch 4" in note and "noise" in note and "\n" not in note
    with pytest.raises(CvgError, match=r"global batch of 4 .* this run has 8 .* pass "
                                       r"--batch-size 2"):
        resume_change(state, 2, 4, path)
    with pytest.raises(CvgError, match="use a number of processes that divides 4"):
        resume_change(state, 3, 2, path)
    old = {"world": 2, "config": {"train": {"batch_size": 3}}}  # before batch_size was stored
    assert "same global batch 6" in resume_change(old, 1, 6, path)


def test_resume_with_another_global_batch_is_refused(cfg, tmp_path):
    cfg.train.steps = 1
    _trainer(cfg, tmp_path).run()
    assert load_checkpoint(checkpoint_path(tmp_path, 1))["batch_size"] == 2
    cfg.train.batch_size = 1
    with pytest.raises(CvgError, match="global batch of 2"):
        _trainer(cfg, tmp_path, resume=True)


# ------------------------------------------------------- non-finite steps
def _nan_d_loss(monkeypatch, bad):
    """Patch the trainer's d_loss: a NaN loss whenever bad() says so."""
    real = trainer_mod.d_loss

    def d_loss(*a, **k):
        loss, parts = real(*a, **k)
        return (loss * math.nan, parts) if bad() else (loss, parts)

    monkeypatch.setattr(trainer_mod, "d_loss", d_loss)


def test_nan_d_loss_never_reaches_the_weights(cfg, tmp_path, monkeypatch):
    tr = _trainer(cfg, tmp_path)
    batch = _batch(tr)
    tr.train_step(batch)
    tr.step = 1
    g0, d0, opt0 = _snapshot(tr)
    inject = [True]
    _nan_d_loss(monkeypatch, lambda: inject[0])
    logs = tr.train_step(batch)
    assert logs["skipped_nonfinite"] == 1 and "loss_d" in logs["nonfinite"]
    assert math.isnan(logs["loss_d"]) and math.isnan(logs["loss_g"])
    g1, d1, opt1 = _snapshot(tr)
    for before, after in ((g0, g1), (d0, d1)):  # parameters AND buffers (BN, SN u/v)
        for k in before:
            assert after[k].isfinite().all() if after[k].is_floating_point() else True, k
            assert torch.equal(before[k], after[k]), k
    for a, b in zip(opt0, opt1):  # Adam moments and step counts untouched
        for k in a:
            assert torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k]
    inject[0] = False
    logs = tr.train_step(batch)
    assert logs["skipped_nonfinite"] == 1 and "nonfinite" not in logs
    assert any(not torch.equal(g0[k], v) for k, v in tr.G.state_dict().items())


def test_nan_g_loss_or_gradients_skip_that_update(cfg, tmp_path, monkeypatch):
    tr = _trainer(cfg, tmp_path)
    batch = _batch(tr)
    g0, d0, _ = _snapshot(tr)
    real = trainer_mod.g_loss
    monkeypatch.setattr(trainer_mod, "g_loss",
                        lambda *a, **k: (lambda l, p: (l * math.inf, p))(*real(*a, **k)))
    logs = tr.train_step(batch)
    assert logs["nonfinite"].startswith("loss_g") and logs["skipped_nonfinite"] == 1
    g1, d1, _ = _snapshot(tr)
    assert all(torch.equal(g0[k], g1[k]) for k in g0)  # G untouched, its buffers restored
    assert all(v.isfinite().all() for v in d1.values() if v.is_floating_point())
    assert any(not torch.equal(d0[k], d1[k]) for k in d0)  # D's (finite) update went ahead
    monkeypatch.setattr(trainer_mod, "g_loss", real)
    # a finite loss whose gradients are not: one parameter's gradient made NaN by a hook
    p = next(tr.D.parameters())
    handle = p.register_hook(lambda grad: grad * math.nan)
    _, d2, _ = _snapshot(tr)
    logs = tr.train_step(batch)
    handle.remove()
    assert math.isfinite(logs["loss_d"]) and logs["nonfinite"] == "loss_d gradients"
    assert logs["skipped_nonfinite"] == 2
    assert all(torch.equal(d2[k], v) for k, v in tr.D.state_dict().items())


def test_nonfinite_steps_in_a_row_roll_back_to_the_last_checkpoint(cfg, tmp_path,
                                                                   monkeypatch):
    cfg.train.steps, cfg.train.checkpoint_every = 4, 2
    cfg.train.max_nonfinite_steps = 2
    tr = _trainer(cfg, tmp_path)
    calls = {"n": 0}

    def bad():  # steps 3 and 4 of the first pass only (a transient blow-up)
        calls["n"] += 1
        return tr.step in (2, 3) and calls["n"] <= 4

    _nan_d_loss(monkeypatch, bad)
    with pytest.warns(UserWarning, match=r"step 4: 2 non-finite steps in a row \(last: "
                                         r"loss_d = nan\); rolled back to step 2"):
        result = tr.run()
    assert result.steps == 4 and tr.guard.rollbacks == 1
    rows = [r for r in _log(tmp_path) if "step" in r]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 3, 4]
    assert [r["skipped_nonfinite"] for r in rows] == [0, 0, 1, 2, 2, 2]
    state = load_checkpoint(checkpoint_path(tmp_path, 1))
    assert state["step"] == 4 and state["skipped_nonfinite"] == 2
    assert all(v.isfinite().all() for v in state["G"].values() if v.is_floating_point())


def test_rolling_back_to_the_same_checkpoint_twice_stops(cfg, tmp_path, monkeypatch):
    cfg.train.steps, cfg.train.checkpoint_every = 4, 1
    cfg.train.max_nonfinite_steps = 2
    tr = _trainer(cfg, tmp_path)
    _nan_d_loss(monkeypatch, lambda: tr.step >= 1)  # diverges again on every replay
    with pytest.warns(UserWarning, match="rolled back to step 1"):
        with pytest.raises(CvgError, match=r"step 3: 2 non-finite steps in a row again after "
                                           r"rolling back to step 1 .*lower --lr-g / --lr-d, "
                                           r"or use --amp none"):
            tr.run()


def test_nonfinite_before_any_checkpoint_is_one_line_error(cfg, tmp_path, monkeypatch):
    cfg.train.steps, cfg.train.max_nonfinite_steps = 3, 2
    tr = _trainer(cfg, tmp_path)
    _nan_d_loss(monkeypatch, lambda: True)
    with pytest.raises(CvgError, match=r"step 2: 2 non-finite steps in a row .* no "
                                       r"checkpoint yet to roll back to"):
        tr.run()


# ------------------------------------------------------- consistency check
def test_consistency_check_covers_buffers(cfg, monkeypatch):
    from cvg_fast.models import build_generator

    torch.manual_seed(0)
    mine = build_generator(cfg, 1, 0)
    names = dict(mine.named_buffers())
    assert any(n.endswith("sn_u") for n in names) and any(n.endswith("running_var")
                                                          for n in names)

    def other_rank(edit):
        """check_consistent as if rank 1 held `mine` edited by `edit` (a faked all_gather)."""
        theirs = build_generator(cfg, 1, 0)
        theirs.load_state_dict(mine.state_dict())
        with torch.no_grad():
            edit(dict(theirs.named_buffers()))
        _, f1, i1 = D.fingerprint(theirs)

        def all_gather(out, t):
            out[0].copy_(t)
            out[1].copy_(f1 if t.dtype == torch.float64 else i1)

        monkeypatch.setattr(D.dist, "all_gather", all_gather)
        D.check_consistent(mine, 2, "G")

    other_rank(lambda b: None)  # identical: passes
    sn_u = next(n for n in names if n.endswith("sn_u"))
    with pytest.raises(RuntimeError, match=f"G: weights differ across processes: {sn_u}"):
        other_rank(lambda b: b[sn_u].mul_(1.001))
    tracked = next(n for n in names if n.endswith("num_batches_tracked"))
    with pytest.raises(RuntimeError, match=tracked):  # integer buffers compared exactly
        other_rank(lambda b: b[tracked].add_(1))
    sn_v = next(n for n in names if n.endswith("sn_v"))
    with pytest.raises(RuntimeError, match=sn_v):  # two values swapped: same sum, not order
        other_rank(lambda b: b[sn_v].view(-1)[:2].copy_(b[sn_v].view(-1)[:2].flip(0).clone()))
