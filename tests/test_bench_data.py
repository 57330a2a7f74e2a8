"""`cvg bench data`: every (preset, whole clip / level, workers) row is measured and reported."""

import json

import pytest

from cvg_fast import cli
from cvg_fast.bench_data import bench_data, report
from cvg_fast.errors import CvgError


def test_rows_cover_whole_clips_and_each_level(synth_data):
    rows = bench_data(synth_data, presets=["tiny"], workers=[0], batches=1, batch_size=2,
                      dali=False)
    assert [(r.reads, r.workers) for r in rows] == [("whole clip", 0), ("level 1", 0),
                                                   ("level 2", 0)]
    by = {r.reads: r for r in rows}
    assert by["whole clip"].frames_per_clip == 16 and by["whole clip"].out_shape == "video 16x3x32x32"
    assert by["level 1"].frames_per_clip == 8 and by["level 1"].out_shape == "high 8x3x16x16"
    assert by["level 2"].frames_per_clip == 8  # a 4-frame window upscaled 2x in time
    assert by["level 2"].out_shape == "high 8x3x32x32, low 4x3x16x16"
    assert all(r.clips == 2 and r.seconds > 0 and r.clips_per_s > 0 for r in rows)
    text = report(rows)
    assert "1.00x" in text and "level 2" in text and "vs PyAV whole" in text


def test_cli_writes_json_and_rejects_bad_workers(synth_data, tmp_path, capsys):
    out = tmp_path / "d.json"
    assert cli.main(["bench", "data", str(synth_data), "--presets", "tiny", "--workers", "0,1",
                     "--levels", "1", "--batches", "1", "--batch-size", "2",
                     "--no-dali", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [(r["reads"], r["workers"]) for r in doc["rows"]] == [
        ("whole clip", 0), ("whole clip", 1), ("level 1", 0), ("level 1", 1)]
    assert "frames read/s" in capsys.readouterr().out
    assert cli.main(["bench", "data", str(synth_data), "--workers", "two"]) == 2
    assert "--workers: comma-separated whole numbers" in capsys.readouterr().err
    with pytest.raises(CvgError, match="batch-size"):
        cli._main(["bench", "data", str(synth_data), "--batch-size", "0"])


def test_dali_rows_on_vp9_files(tmp_path):
    pytest.importorskip("nvidia.dali")
    from cvg_fast.data import write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path / "vp9", num_classes=1, videos_per_class=2, frames=24,
                                   size=32, fps=8, progress=False, codec="vp9")
    rows = bench_data(data, presets=["tiny"], workers=[1], batches=1, batch_size=2, levels="1",
                      dali=True)
    dali = [r for r in rows if r.source == "dali"]
    assert [(r.reads, r.workers) for r in dali] == [("whole clip", 1)]
    assert dali[0].out_shape == "video 16x3x32x32" and dali[0].clips_per_s > 0

