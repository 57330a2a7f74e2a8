"""`cvg bench quality`: the --set parser, the ceiling sources, and a CI-sized study end to end
(narrow networks, 2 steps per level, 8 videos, the evaluator's "tiny" budget)."""

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cvg_fast.bench_quality import (CEILINGS, apply_overrides, ceiling_source, level1_view,
                                    parse_seeds, study_metrics)
from cvg_fast.cli import main
from cvg_fast.config import get_preset
from cvg_fast.errors import CvgError

# the evaluator's "tiny" budget is for plumbing only: its low accuracy warning is expected
pytestmark = pytest.mark.filterwarnings("ignore:synthetic-set evaluator reached only")


# ------------------------------------------------------------------------------ --set
def test_set_parses_each_field_with_its_type():
    base = get_preset("tiny")
    cfg, done = apply_overrides(base, [
        "train.tbptt_horizon=12", "z_t_dim=16", "levels.1.g_ch=48", "levels.2.matching=off",
        "train.lr_g=3e-4", "train.channels_last=none", "train.amp=none", "levels.2.window=2"])
    assert cfg.train.tbptt_horizon == 12 and cfg.z_t_dim == 16
    assert cfg.levels[0].g_ch == 48 and cfg.levels[1].g_ch == base.levels[1].g_ch  # 1-based
    assert cfg.levels[1].matching is False and cfg.levels[1].window == 2
    assert cfg.train.lr_g == pytest.approx(3e-4) and isinstance(cfg.train.lr_g, float)
    assert cfg.train.channels_last is None and cfg.train.amp == "none"
    assert done == {"train.tbptt_horizon": 12, "z_t_dim": 16, "levels.1.g_ch": 48,
                    "levels.2.matching": False, "train.lr_g": 3e-4,
                    "train.channels_last": None, "train.amp": "none", "levels.2.window": 2}
    assert base.train.tbptt_horizon == 24 and base.levels[0].g_ch == 32  # a copy was changed
    cfg, _ = apply_overrides(base, ["train.channels_last=true", "train.ema_decay=0.99"])
    assert cfg.train.channels_last is True and cfg.train.ema_decay == 0.99


@pytest.mark.parametrize("item, needle", [
    ("foo=1", "--set foo: unknown key; valid: name, num_classes"),
    ("levels.3.g_ch=8", "levels.N.{frames,size,g_ch"),
    ("levels.x.g_ch=8", "unknown key"),
    ("train.nope=1", "train.{batch_size,lr_g"),
    ("train.tbptt_horizon=abc", "train.tbptt_horizon takes a whole number"),
    ("train.tbptt_horizon=1.5", "a whole number"),
    ("levels.2.matching=maybe", "takes true or false"),
    ("train.lr_g=fast", "takes a number"),
    ("z_t_dim", "use KEY=VALUE"),
    ("train.steps=5", "use --steps-l1/--steps-l2"),
    ("train.seed=5", "use --seeds"),
    ("train.loss=l2", "unknown loss"),  # the config's own check, after parsing
])
def test_set_errors_are_one_line(item, needle):
    with pytest.raises(CvgError) as e:
        apply_overrides(get_preset("tiny"), [item])
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_bad_set_key_from_the_command_line(capsys):
    assert main(["bench", "quality", "--set", "levels.1.gch=8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --set levels.1.gch: unknown key") and "\n" not in err


def test_seeds_and_metric_names():
    assert parse_seeds("0-2") == [0, 1, 2] and parse_seeds("4,1-2,4") == [4, 1, 2]
    with pytest.raises(CvgError):
        parse_seeds("a-b")
    assert study_metrics(16) == [
        "fvdsynth_16f", "fvdsynth_64f", "accsynth", "speedsynth_16f", "speedsynth_64f",
        "speedsynth_256f", "flickersynth_16f", "flickersynth_64f", "flickersynth_256f"]


# --------------------------------------------------------------------------- ceilings
def _real_source(arr, labels):
    def source(count, frames):
        yield arr[:count, :frames], labels[:count]
    return source


def _clips(n=2, frames=16, size=32):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, frames, size, size, 3), generator=g,
                         dtype=torch.uint8).numpy()


def test_best_detail_is_closer_to_real_than_the_base_path():
    cfg = get_preset("tiny")
    arr = _clips()
    base, base_labels = next(ceiling_source(_real_source(arr, [0, 3]), cfg, False)(2, 16))
    best, best_labels = next(ceiling_source(_real_source(arr, [0, 3]), cfg, True)(2, 16))
    assert base.shape == best.shape == arr.shape and base.dtype == best.dtype == np.uint8
    assert base_labels == best_labels == [0, 3]

    def mae(v):
        return np.abs(v.astype(np.float64) - arr).mean()

    assert mae(best) < 0.8 * mae(base), (mae(best), mae(base))
    # at the frames level 1 keeps, base + the frame's own high-pass is the frame itself
    assert np.abs(best[:, ::2].astype(int) - arr[:, ::2]).max() <= 1


def test_base_path_is_the_upscalers_and_even_frames_are_level1_upsampled():
    from cvg_fast.models.generators import UpscalerGenerator

    cfg = get_preset("tiny")
    arr = _clips()
    out, _ = next(ceiling_source(_real_source(arr, [0, 1]), cfg, False)(2, 16))
    x = torch.from_numpy(arr).permute(0, 1, 4, 2, 3).float()
    # level 1 by hand: every 2nd frame (f_t), then f_s = antialiased bilinear 2x
    keep = x[:, ::2].reshape(-1, 3, 32, 32)
    low = F.interpolate(keep, scale_factor=0.5, mode="bilinear", antialias=True,
                        align_corners=False)
    assert torch.allclose(level1_view(x, cfg).reshape(-1, 3, 16, 16), low, atol=1e-3)
    up = F.interpolate(low, size=(32, 32), mode="bilinear", align_corners=False)
    up = up.round().clamp(0, 255).to(torch.uint8).view(2, 8, 3, 32, 32).permute(0, 1, 3, 4, 2)
    assert np.abs(out[:, ::2].astype(int) - up.numpy()).max() <= 1
    # and the whole clip is the level-2 upscaler's base path of that level 1
    g = UpscalerGenerator(in_size=16, t_factor=2, s_factor=2, ch=4, z_ch=2)
    ref = g.base(level1_view(x, cfg)).round().clamp(0, 255).to(torch.uint8)
    assert np.array_equal(out, ref.permute(0, 1, 3, 4, 2).numpy())


# ------------------------------------------------------------------------- end to end
NARROW = ["levels.1.g_ch=8", "levels.1.d_ch=8", "levels.2.g_ch=8", "levels.2.d_ch=8",
          "train.batch_size=4", "train.num_workers=0", "train.bn_recalibration_batches=1",
          "train.input_rollout=0"]


def _finite(numbers, name):
    v = numbers[name]["value"]
    assert v is not None and math.isfinite(v), (name, numbers[name])


@pytest.mark.slow
def test_study_end_to_end_then_summarize(tmp_path, capsys):
    out = tmp_path / "results"
    args = ["bench", "quality", "--seeds", "3", "--steps-l1", "2", "--steps-l2", "2",
            "--num-eval-videos", "8", "--data", str(tmp_path / "data"), "--out", str(out),
            "--work", str(tmp_path / "work"), "--evaluator-budget", "tiny", "--label", "ci"]
    for item in NARROW:
        args += ["--set", item]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "cascade seed 3" in printed and "l1-perfect+best-detail" in printed
    [path] = out.glob("quality_ci_*.json")
    rec = json.loads(path.read_text())
    for key in ("format", "label", "date", "git", "machine", "torch", "overrides", "config",
                "seeds", "steps", "levels", "num_eval_videos", "metrics", "ceilings", "runs",
                "summary", "wall_seconds"):
        assert key in rec, key
    assert rec["label"] == "ci" and rec["seeds"] == [3] and rec["steps"] == {"1": 2, "2": 2}
    assert rec["overrides"]["levels.2.g_ch"] == 8 and rec["config"]["levels"][1]["g_ch"] == 8
    assert rec["machine"]["cores"] >= 1 and rec["machine"]["cpu_model"]
    names = study_metrics(16)
    assert rec["metrics"] == names
    [run] = rec["runs"]
    assert run["seed"] == 3 and set(run["rows"]) == {"level1", "cascade"}
    assert {"train_level1", "train_level2", "score", "wall"} <= set(run["seconds"])
    for row in run["rows"].values():
        for name in names:
            _finite(row, name)
        for name, windows in (("speedsynth_16f", 1), ("speedsynth_64f", 4),
                              ("flickersynth_256f", 16)):
            ratios = row[name]["ratios"]
            assert len(ratios) == windows and all(math.isfinite(r) for r in ratios)
            worst = max(ratios, key=lambda r: abs(math.log(r)))  # the value: the worst window
            assert row[name]["value"] == pytest.approx(worst)
    assert list(rec["ceilings"]) == list(CEILINGS)
    for row in rec["ceilings"].values():  # scored only as long as the 64-frame real clips
        assert set(row) == {n for n in names if not n.endswith("_256f")}
        for name in row:
            _finite(row, name)
    assert rec["summary"]["cascade"]["accsynth"]["n"] == 1

    other = copy.deepcopy(rec)  # a second label with two seeds: grouped, mean ± sd
    other["label"] = "other"
    other["runs"].append(copy.deepcopy(run) | {"seed": 4})
    other["runs"][1]["rows"]["level1"]["fvdsynth_16f"]["value"] += 10.0
    (out / "quality_other_x.json").write_text(json.dumps(other))
    assert main(["bench", "quality", "--summarize", str(out)]) == 0
    table = capsys.readouterr().out
    lines = {line.split("  ")[0]: line for line in table.splitlines()}
    assert "ci level1 (n=1)" in lines and "ci cascade (n=1)" in lines
    assert "±" in lines["other level1 (n=2)"] and "real" in lines
    assert "other: 1 file(s), seeds 3,4" in table
