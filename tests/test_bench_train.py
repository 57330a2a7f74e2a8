"""`cvg bench train`: rows, baseline, JSON record, backend switching, one-line errors."""

import json
import math

from conftest import narrow_tiny

from cvg_fast.bench_train import bench_train
from cvg_fast.cli import main

CONFIGS = ["fp32-reference", "fp32-channels-last", "fp32-fused", "bf16-fused"]  # no compile: slow


def test_bench_level2_rows_and_json(tmp_path):
    cfg = narrow_tiny()
    res = bench_train(cfg=cfg, level=2, batch_size=2, steps=1, warmup=1, configs=CONFIGS,
                      out=tmp_path, device="cpu", log=None, ops=True)
    assert [lr.level for lr in res.levels] == [2]  # level 1 was made on the fly, not timed
    rows = {r.name: r for r in res.levels[0].rows}
    assert list(rows) == CONFIGS
    for r in rows.values():
        assert r.skipped is None, r.skipped
        assert math.isfinite(r.ms_per_step) and r.ms_per_step > 0
        assert r.steps_per_s > 0 and r.speedup > 0
        assert r.peak_mem_bytes is None  # CPU: no per-configuration counter
    assert rows["fp32-reference"].speedup == 1.0
    assert rows["fp32-reference"].backend_active == "reference"
    assert rows["bf16-fused"].amp == "bf16" and rows["fp32-fused"].amp == "none"
    assert not rows["fp32-reference"].channels_last and rows["fp32-channels-last"].channels_last

    data = json.loads(res.json_path.read_text())
    assert res.json_path.parent == tmp_path
    assert res.json_path.name.startswith("train_tiny_cpu_")
    s = data["settings"]
    assert (s["batch_size"], s["steps"], s["warmup"], s["levels"]) == (2, 1, 1, [2])
    assert list(s["configs"]) == CONFIGS and s["baseline"] == "fp32-reference"
    assert s["config"]["levels"][1]["g_ch"] == 8
    assert data["machine"]["device"] == "cpu" and data["machine"]["torch_threads"] >= 1
    saved = {r["name"]: r for r in data["levels"][0]["rows"]}
    assert saved["fp32-reference"]["backend_active"] == "reference"
    from cvg_fast.ops import backends

    # the fused rows really ran on another backend when one is built (cpp on CPU)
    best = "cpp" if backends.available_backends()["cpp"] == "ok" else "reference"
    assert saved["fp32-fused"]["backend_active"] == best
    assert saved["bf16-fused"]["backend_active"] == best
    assert saved["fp32-fused"]["ms_per_step"] == rows["fp32-fused"].ms_per_step
    assert backends.resolve_backend("gru_cell", "cpu") == best  # override undone after

    # the per-op table: every op timed eager, fused where a kernel exists, no compile asked
    ops = {r["op"]: r for r in data["ops"]}
    assert set(ops) == {"gru pointwise fwd+bwd", "gru sequence fwd+bwd", "pyramid views"}
    for r in ops.values():
        assert r["eager_ms"] > 0 and r["compile_ms"] is None
        assert (r["fused_ms"] is not None) == (best != "reference")
    assert data["copy_gbps"] > 0
    text = res.report()
    assert "per-op" in text and "pyramid views" in text and "GB/s" in text


def _one_line(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err


def test_bench_cli_errors(capsys, tmp_path):
    out = ["--out", str(tmp_path)]
    _one_line(capsys, ["bench", "train", "--configs", "fp64-magic", *out], "fp64-magic",
              "fp32-reference")
    _one_line(capsys, ["bench", "train", "--steps", "0", *out], "--steps")
    _one_line(capsys, ["bench", "train", "--batch-size", "0", *out], "--batch-size")
    _one_line(capsys, ["bench", "train", "--preset", "nope", *out], "nope")
    _one_line(capsys, ["bench", "train", "--level", "3", *out], "--level 3")
    assert not list(tmp_path.iterdir())  # nothing written on a bad command


def test_default_configs_leave_out_the_slow_compile():
    from cvg_fast.bench_train import CONFIGS, parse_configs

    assert parse_configs(None) == ["fp32-reference", "fp32-channels-last", "bf16-channels-last",
                                   "bf16-fused"]
    assert parse_configs("all") == list(CONFIGS) and parse_configs(["all"]) == list(CONFIGS)
    assert parse_configs("bf16-fused,fp32-reference") == ["bf16-fused", "fp32-reference"]
