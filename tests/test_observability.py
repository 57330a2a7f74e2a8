"""TensorBoard event files, the progress bar's memory, the end-of-run throughput line."""

import io
import json
import sys

import numpy as np
import pytest
import torch

from cvg_fast.data.random_clips import RandomClips
from cvg_fast.training import LevelTrainer
from cvg_fast.training.distributed import DistInfo
from cvg_fast.training.run_memory import format_bytes, memory_bytes


def _trainer(cfg, run, **kw):
    top = cfg.levels[-1]
    return LevelTrainer(cfg, 1, RandomClips(top.frames, top.size, 2, 8), run, None, DistInfo(),
                        **kw)


def _events(tb_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = list(tb_dir.glob("events.out.tfevents.*"))
    assert len(files) == 1, files
    acc = EventAccumulator(str(files[0]), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def test_tensorboard_gets_losses_perf_memory_metrics_and_samples(tiny_cfg, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from PIL import Image

    tc = tiny_cfg.train
    tc.steps, tc.log_every, tc.sample_every, tc.checkpoint_every = 2, 1, 2, 2
    tc.batch_size = 2
    trainer = _trainer(tiny_cfg, tmp_path, progress=True,
                       eval_fn=lambda cascade: {"fvd_synth": 12.5}, eval_every=2)
    trainer.run()
    out = capsys.readouterr()
    assert "mem=" in out.err and "wait=" in out.err  # the bar, side by side
    end = [line for line in out.out.splitlines() if "waiting for data" in line]
    assert len(end) == 1 and "steps/s" in end[0] and "clips/s (global batch 2)" in end[0]
    assert "peak memory" in end[0] and "(RSS)" in end[0]

    acc = _events(tmp_path / "level1" / "tb")
    with open(tmp_path / "level1" / "log.jsonl") as f:
        rows = [json.loads(line) for line in f if '"step"' in line and '"eval"' not in line]
    loss_d = acc.Scalars("train/loss_d")
    assert [e.step for e in loss_d] == [1, 2]  # one point per log.jsonl line
    assert [e.value for e in loss_d] == pytest.approx([r["loss_d"] for r in rows], rel=1e-6)
    for tag in ("train/loss_g", "train/skipped_nonfinite", "perf/steps_per_s",
                "perf/data_wait_pct", "perf/memory_GiB", "perf/peak_memory_GiB"):
        assert len(acc.Scalars(tag)) == 2, tag
    now, peak = acc.Scalars("perf/memory_GiB")[-1].value, acc.Scalars("perf/peak_memory_GiB")[-1]
    assert 0.02 < now <= peak.value < 64  # a process with torch loaded: tens of MB at least
    assert acc.Scalars("train/skipped_nonfinite")[-1].value == 0
    fvd = acc.Scalars("eval/fvd_synth")
    assert [(e.step, e.value) for e in fvd] == [(2, 12.5)]

    # the grid image is the PNG written beside it; the video is every frame of the .mp4's
    grid = acc.Images("samples/grid")
    png = np.asarray(Image.open(tmp_path / "level1" / "samples" / "step0000002.png"))
    assert len(grid) == 1 and grid[0].step == 2
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(grid[0].encoded_image_string))), png)
    video = acc.Images("samples/video")
    assert len(video) == 1 and video[0].step == 2
    gif = Image.open(io.BytesIO(video[0].encoded_image_string))
    frames, size = tiny_cfg.levels[0].frames, tiny_cfg.levels[0].size
    assert gif.format == "GIF" and gif.n_frames == frames
    assert gif.size == (4 * (size + 2) - 2, size)  # 4 samples side by side, 2 px apart


def test_no_tensorboard_flag_and_missing_package(tiny_cfg, tmp_path, monkeypatch):
    from cvg_fast.training.launch import build_parser

    args = build_parser().parse_args(["--level", "1", "--data", "d", "--no-tensorboard"])
    assert args.no_tensorboard
    tiny_cfg.train.steps = 1
    _trainer(tiny_cfg, tmp_path / "off", progress=False, tensorboard=False).run()
    assert (tmp_path / "off" / "level1" / "log.jsonl").is_file()
    assert not (tmp_path / "off" / "level1" / "tb").exists()

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import -> ImportError
    with pytest.warns(UserWarning, match="tensorboard package is not installed") as caught:
        _trainer(tiny_cfg, tmp_path / "missing", progress=False).run()
    assert sum("tensorboard" in str(w.message) for w in caught) == 1  # one warning
    with open(tmp_path / "missing" / "level1" / "log.jsonl") as f:
        assert json.loads(f.readline())["step"] == 1
    assert not (tmp_path / "missing" / "level1" / "tb").exists()


def test_memory_reading_and_format():
    now, peak = memory_bytes(torch.device("cpu"))
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) * 1024
    assert 0 < now <= peak and abs(peak - hwm) <= 64 * 2**20  # HWM only grows in between
    block = np.ones(64 * 2**20 // 8)  # 64 MiB touched: resident now (RSS may not grow when
    got = memory_bytes(torch.device("cpu"))[0]  # the allocator reuses pages it already had)
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) * 1024
    assert abs(got - rss) <= 8 * 2**20 and got >= block.nbytes  # it is the process's VmRSS
    del block
    assert [format_bytes(n) for n in (512, 1536, 5 * 2**20, 1.2 * 2**30, 3 * 2**40)] == [
        "512B", "1.5K", "5.0M", "1.2G", "3.0T"]
