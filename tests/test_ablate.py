"""`cvg ablate`: level 1 trained once, one level 2 per variant, a scored row per variant.

Runs the real training and metric code end to end, made small: narrow networks, one
step per level, 8 evaluation clips and the evaluator's "tiny" budget.
"""

import json
import math
import shutil

import pytest

from cvg_fast.ablate import ABLATE_METRICS, parse_windows, plan_variants, run_ablation
from cvg_fast.cli import main
from cvg_fast.config import get_preset
from cvg_fast.errors import CvgError
from cvg_fast.models.checkpoint import load_checkpoint
from conftest import narrow_tiny


def _narrow(name="tiny"):
    return narrow_tiny(name)


# the evaluator's "tiny" budget is for plumbing only: its low accuracy warning is expected
pytestmark = pytest.mark.filterwarnings("ignore:synthetic-set evaluator reached only")

SMALL = dict(steps=1, steps_level1=1, num_eval_videos=8, evaluator_budget="tiny",
             progress=False)


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablate")
    result = run_ablation(out, cfg=_narrow(), matching_videos=4, **SMALL)
    return out, result


def _row_is_finite(row):
    for m in ABLATE_METRICS:
        assert row[m] is not None and math.isfinite(row[m]), (m, row)


def test_json_has_a_finite_row_per_variant(ablation):
    out, result = ablation
    saved = json.loads((out / "ablate.json").read_text())
    assert list(saved["rows"]) == ["real", "bilinear", "md_w4", "nomd_w4", "md_w8"]
    for label, row in saved["rows"].items():
        _row_is_finite(row)
        if label not in ("real", "bilinear"):
            assert math.isfinite(row["matching_error"]) and row["train_seconds"] > 0
    s = saved["settings"]
    assert s["variants"] == {
        "md_w4": {"window": 4, "matching": True, "steps": 1, "train_seed": 0,
                  "run": str(out / "variants" / "md_w4")},
        "nomd_w4": {"window": 4, "matching": False, "steps": 1, "train_seed": 0,
                    "run": str(out / "variants" / "nomd_w4")},
        "md_w8": {"window": 8, "matching": True, "steps": 1, "train_seed": 0,
                  "run": str(out / "variants" / "md_w8")}}
    assert (s["preset"], s["num_eval_videos"], s["steps_level1"], s["steps"]) == ("tiny", 8, 1, 1)
    assert s["data_seeds"] == {"train": 0, "heldout": 1} and s["sample_seed"] == 0
    assert saved["rows"] == result.rows
    assert any("detector: synth-evaluator" in line for line in saved["describe"])
    md = (out / "ablate.md").read_text()
    assert md.startswith("| row |") and "| nomd_w4 | 4 | off |" in md


def test_variants_train_what_they_say(ablation):
    out, _ = ablation
    var = out / "variants"
    for name, matching, window in (("md_w4", True, 4), ("nomd_w4", False, 4), ("md_w8", True, 8)):
        cfg = json.loads((var / name / "level2" / "config.json").read_text())
        assert cfg["levels"][1]["matching"] is matching, name
        assert cfg["levels"][1]["window"] == window, name
        state = load_checkpoint(var / name / "level2" / "checkpoint.pt")
        assert state["config"]["levels"][1]["matching"] is matching
        assert state["step"] == 1
        has_md = any(k.startswith("matching.") for k in state["D"])
        assert has_md is matching, (name, sorted(state["D"])[:5])


def test_level1_is_trained_once_and_shared(ablation):
    out, _ = ablation
    trained = out / "level1_run" / "level1"
    assert len((trained / "log.jsonl").read_text().splitlines()) == 1  # one step, one run
    ref = (trained / "checkpoint.pt").read_bytes()
    for name in ("md_w4", "nomd_w4", "md_w8"):
        copy = out / "variants" / name / "level1"
        assert sorted(p.name for p in copy.iterdir()) == ["checkpoint.pt", "config.json"]
        assert (copy / "checkpoint.pt").read_bytes() == ref


def _names(variants):
    return [v.name for v in variants]


def test_variant_planning():
    cfg = get_preset("tiny")
    assert _names(plan_variants(cfg)) == ["md_w4", "nomd_w4", "md_w8"]
    assert _names(plan_variants(cfg, windows=(8, 2, 4, 2))) == ["md_w4", "nomd_w4", "md_w2",
                                                                "md_w8"]
    assert _names(plan_variants(cfg, ["nomd_w4", "md_w4", "nomd_w4"])) == ["nomd_w4", "md_w4"]
    assert parse_windows("2, 8,") == (2, 8) and parse_windows("") == ()
    for bad in (dict(names=["md_w5"]), dict(names=[]), dict(windows=(0,)), dict(windows=(9,))):
        with pytest.raises(CvgError):
            plan_variants(cfg, **bad)
    with pytest.raises(CvgError):
        parse_windows("2,x")


@pytest.mark.parametrize("args, needle", [
    (["--variants", "md_w5"], "unknown variant 'md_w5'"),
    (["--variants", "md_w2"], "--windows"),
    (["--windows", "0"], "outside 1..8"),
    (["--windows", "9"], "outside 1..8"),
    (["--windows", "2,four"], "'four'"),
    (["--num-eval-videos", "6"], "--num-eval-videos"),
    (["--steps", "0"], "--steps must be"),
    (["--steps-level1", "0"], "--steps-level1 must be"),
])
def test_bad_options_are_one_line_errors_before_any_work(tmp_path, capsys, args, needle):
    out = tmp_path / "out"
    assert main(["ablate", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and needle in err, err
    assert not out.exists()


def test_cli_runs_a_chosen_variant(ablation, tmp_path, capsys, monkeypatch):
    """Through `cvg ablate`'s parser and report; data and evaluator reused from a copy."""
    src, _ = ablation
    out = tmp_path / "cli"
    for d in ("data", "heldout"):
        shutil.copytree(src / d, out / d)
    monkeypatch.setattr("cvg_fast.ablate.get_preset", lambda name: _narrow(name))
    rc = main(["ablate", "--out", str(out), "--variants", "md_w2", "--windows", "2,8",
               "--steps", "1", "--steps-level1", "1", "--num-eval-videos", "8",
               "--evaluator-budget", "tiny", "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "reusing the training set" in printed and "[4/5] level 2, variant md_w2" in printed
    lines = printed.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("row "))
    assert [line.split()[0] for line in lines[head + 2:head + 5]] == ["real", "bilinear", "md_w2"]
    assert "seeds: data 0 (training set) / 1 (held-out), training 0, sampling 0" in printed
    saved = json.loads((out / "ablate.json").read_text())
    assert list(saved["rows"]) == ["real", "bilinear", "md_w2"]
    _row_is_finite(saved["rows"]["md_w2"])
    cfg = json.loads((out / "variants" / "md_w2" / "level2" / "config.json").read_text())
    assert cfg["levels"][1]["window"] == 2 and cfg["levels"][1]["matching"] is True
