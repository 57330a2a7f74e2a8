"""`cvg memory`: the saved-tensor counter is exact, upscalers are constant in length, the
non-cascaded model grows linearly, and the command writes its table, PNG and JSON."""

import json

import pytest
import torch
import torch.nn as nn

from cvg_fast.cli import main
from cvg_fast.config import get_preset
from cvg_fast.errors import CvgError
from cvg_fast.metrics.memory import (
    SavedTensorCounter, measure_step, memory_study, module_tensors, non_cascaded_config,
)


def test_counter_exact_on_linear():
    lin = nn.Linear(5, 3)
    x = torch.randn(4, 5, requires_grad=True)
    with SavedTensorCounter(module_tensors(lin)) as c:  # parameters excluded
        out = lin(x)
    assert c.bytes == 4 * 5 * 4  # addmm saves its input (4x5 fp32); the weight is excluded
    with SavedTensorCounter() as c2:
        out = lin(x)
    assert c2.bytes == 4 * 5 * 4 + 3 * 5 * 4  # ... and the weight (3x5 fp32) when counted
    del out


def test_views_of_one_storage_count_once():
    a = torch.randn(100, requires_grad=True)
    with SavedTensorCounter() as c:
        b = a * 2  # a scalar factor: nothing saved
        out = b[:50] * b[50:]  # saves two views of b's storage
    assert len(c.storages) == 1
    assert c.bytes == 100 * 4
    del out


def test_upscaler_constant_non_cascaded_linear():
    cfg = get_preset("tiny")
    frames = [8, 16, 32]
    study = memory_study(cfg, frames)
    top = [r.activations for r in study.levels[2]]
    assert len(set(top)) == 1 and top[0] > 0  # exactly the same at every output length
    # measured afresh, the window step is still the same bytes
    assert measure_step(cfg, 2).activations == top[0]
    non = [r.activations for r in study.non_cascaded]
    d1, d2 = non[1] - non[0], non[2] - non[1]
    assert d1 > 0 and d2 / d1 == pytest.approx(2.0, rel=0.05)  # linear in F
    lv1 = [r.activations for r in study.levels[1]]
    assert lv1[0] < lv1[1] < lv1[2]
    assert study.levels[1][2].frames == 32 // study.total_t_factor
    assert study.non_cascaded[0].size == cfg.levels[-1].size
    assert study.fit["frames_in_budget"]["non_cascaded"] > 0


def test_non_cascaded_config_uses_level1_widths():
    cfg = get_preset("kinetics600")
    c = non_cascaded_config(cfg, 20)
    assert len(c.levels) == 1
    lv = c.levels[0]
    assert (lv.frames, lv.size, lv.g_ch, lv.d_ch) == (20, 128, 64, 64)
    assert cfg.levels[0].frames == 24  # the preset is untouched


def test_bad_inputs():
    with pytest.raises(CvgError):
        memory_study(get_preset("tiny"), [0, 8])
    with pytest.raises(CvgError):
        memory_study(get_preset("tiny"), [8], batch_size=0)
    with pytest.raises(CvgError):
        memory_study(get_preset("tiny"), [8], budget_gb=0)


def test_cli_writes_png_json_and_table(tmp_path, capsys):
    from PIL import Image

    rc = main(["memory", "--preset", "tiny", "--frames", "8,16", "--out", str(tmp_path),
               "--budget-gb", "0.5"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "cascade total" in out and "non-casc total" in out
    assert "paper (Fig. 3)" in out and "frames that fit in 0.5 GB" in out
    png, js = tmp_path / "memory_tiny.png", tmp_path / "memory_tiny.json"
    assert Image.open(png).size == (800, 520)
    data = json.loads(js.read_text())
    assert data["frames"] == [8, 16] and data["batch_size"] == 1
    assert len(data["non_cascaded"]) == 2 and set(data["levels"]) == {"1", "2"}


@pytest.mark.parametrize("frames", ["0,8", "abc", "8,-4", ""])
def test_cli_bad_frames_one_line_error(frames, capsys):
    rc = main(["memory", "--preset", "tiny", "--frames", frames])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: --frames")


def test_cli_unknown_preset(capsys):
    assert main(["memory", "--preset", "nope"]) == 2
    assert "unknown preset" in capsys.readouterr().err
