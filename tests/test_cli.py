"""The commands users type: one-line errors (no traceback) for every bad input."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=cwd or ROOT, timeout=300)


def _train(*args):
    return _run(str(ROOT / "train" / "level.py"), "--no-progress", *args)


def _one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith("error: ")
    for n in needles:
        assert n in last, last
    return last


def test_missing_data_folder(tmp_path):
    p = _train("--level", "1", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run"))
    _one_line_error(p, "nope")
    assert not (tmp_path / "run" / "level1" / "checkpoint.pt").exists()


def test_empty_data_folder(tmp_path):
    (tmp_path / "data").mkdir()
    p = _train("--level", "1", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"))
    _one_line_error(p, "data")


def test_not_a_video(tmp_path):
    d = tmp_path / "data" / "cls"
    d.mkdir(parents=True)
    (d / "clip.mp4").write_text("this is not a video")
    p = _train("--level", "1", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"))
    _one_line_error(p, "clip.mp4")


def test_video_shorter_than_clip(tmp_path):
    from cvg_fast.data import write_synthetic_dataset

    write_synthetic_dataset(tmp_path / "data", num_classes=1, videos_per_class=1, frames=5,
                            size=32, progress=False)
    p = _train("--level", "1", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"))
    _one_line_error(p, "16")


def test_unknown_preset(tmp_path):
    p = _train("--preset", "imagenet", "--level", "1", "--data", str(tmp_path), "--out",
               str(tmp_path / "run"))
    _one_line_error(p, "imagenet", "tiny")


def test_level_without_lower_levels(synth_data, tmp_path):
    p = _train("--level", "2", "--data", str(synth_data), "--out", str(tmp_path / "run"))
    _one_line_error(p, "level 1")
    assert not (tmp_path / "run" / "level2" / "checkpoint.pt").exists()


def test_level_out_of_range(synth_data, tmp_path):
    p = _train("--level", "3", "--data", str(synth_data), "--out", str(tmp_path / "run"))
    _one_line_error(p, "levels 1..2")


def test_generate_frames_below_one(tmp_path):
    p = _run("-m", "cvg_fast.cli", "generate", str(tmp_path), "--frames", "0", "--out",
             str(tmp_path / "o"))
    # no level 1 in an empty folder is reported before the frame count
    _one_line_error(p)


@pytest.mark.slow
def test_train_two_levels_then_generate_from_the_shell(synth_data, tmp_path):
    run = tmp_path / "run"
    common = ["--data", str(synth_data), "--out", str(run), "--steps", "2", "--batch-size", "2",
              "--g-ch", "8", "--d-ch", "8", "--num-workers", "0"]
    assert _train("--level", "1", *common).returncode == 0
    p = _train("--level", "2", *common)
    assert p.returncode == 0, p.stderr
    p = _run("-m", "cvg_fast.cli", "generate", str(run), "--frames", "0", "--out",
             str(tmp_path / "o"))
    _one_line_error(p, "frames must be")
    p = _run("-m", "cvg_fast.cli", "generate", str(run), "--frames", "64", "--out",
             str(tmp_path / "o"), "--num-videos", "2", "--grid")
    assert p.returncode == 0, p.stderr
    assert len(list((tmp_path / "o").glob("*.mp4"))) == 2
    assert (tmp_path / "o" / "grid.png").is_file()
    assert "matching error, level 2" in p.stdout
    p = _run("-m", "cvg_fast.cli", "generate", str(run), "--frames", "37", "--out",
             str(tmp_path / "o2"), "--chunk-frames", "3", "--max-batch", "2")
    assert p.returncode == 0, p.stderr
    assert "level-1 chunks of 3 frames, up to 2 windows per upscaler call" in p.stdout
    import av

    with av.open(str(next((tmp_path / "o2").glob("*.mp4")))) as c:
        assert sum(1 for _ in c.decode(video=0)) == 37
    p = _run("-m", "cvg_fast.cli", "generate", str(run), "--frames", "8", "--out",
             str(tmp_path / "o3"), "--max-batch", "0")
    _one_line_error(p, "max_batch must be")


# ---------------------------------------------------------------------- cvg eval
def _cvg(*args):
    return _run("-m", "cvg_fast.cli", *args)


@pytest.fixture(scope="module")
def one_level_run(tmp_path_factory):
    """A run with a trained (1 step) level 1 on a small synthetic set."""
    from cvg_fast.config import get_preset
    from cvg_fast.data import write_synthetic_dataset
    from cvg_fast.training import train_level

    root = tmp_path_factory.mktemp("evalrun")
    data = write_synthetic_dataset(root / "data", num_classes=2, videos_per_class=3, frames=20,
                                   size=32, progress=False)
    cfg = get_preset("tiny")
    cfg.train.steps, cfg.train.batch_size, cfg.train.num_workers = 1, 2, 0
    cfg.train.bn_recalibration_batches = 1
    for lv in cfg.levels:
        lv.g_ch = lv.d_ch = 8
    train_level(cfg, 1, data, root / "run", device="cpu", progress=False)
    return root / "run", data


def test_eval_run_without_levels(tmp_path, one_level_run):
    (tmp_path / "empty").mkdir()
    _one_line_error(_cvg("eval", str(tmp_path / "empty"), "--data", str(one_level_run[1])),
                    "no trained level 1")


def _flat_copy(data, dest, n):
    """The first n videos of a class-folder dataset, as a flat (non-synthetic) folder."""
    dest.mkdir()
    for f in sorted(data.glob("*/*.mp4"))[:n]:
        (dest / f.name).write_bytes(f.read_bytes())
    return dest


def test_eval_non_synthetic_data_without_i3d_scores_flow(tmp_path, one_level_run):
    """No evaluator, no I3D: the optical-flow ratios only, shrunk to the 3 short videos,
    and one line saying so (and that FVD needs --i3d)."""
    run, data = one_level_run
    plain = _flat_copy(data, tmp_path / "plain", 3)
    p = _cvg("eval", str(run), "--data", str(plain), "--no-progress")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert ("data has 3 videos of 20 frames: --num-videos 256 -> 3; flow_32f's real reference "
            "from 16-frame clips; no FVD: not a synthetic dataset, pass --i3d PATH for I3D "
            "FVD") in lines, p.stdout
    assert any(line.split()[:2] == ["flow_32f", "cascade"] for line in lines if line.strip())


def test_eval_missing_or_wrong_i3d_file(tmp_path, one_level_run):
    run, data = one_level_run
    last = _one_line_error(_cvg("eval", str(run), "--data", str(data), "--i3d",
                                str(tmp_path / "i3d.pt"), "--metrics", "fvd4_16f"), "i3d.pt")
    assert "i3d_pretrained_400.pt" in last and "i3d_torchscript.pt" in last
    junk = tmp_path / "junk.pt"
    junk.write_text("not weights")
    _one_line_error(_cvg("eval", str(run), "--data", str(data), "--i3d", str(junk),
                         "--metrics", "fvd4_16f"), "junk.pt")


def test_eval_fewer_videos_than_asked_and_unknown_metric(one_level_run):
    run, data = one_level_run
    _one_line_error(_cvg("eval", str(run), "--data", str(data), "--metrics", "fvdsynth_8f",
                         "--num-videos", "50"), "50", "--num-videos")
    _one_line_error(_cvg("eval", str(run), "--data", str(data), "--metrics", "fid50k"),
                    "unknown metric")


def test_train_eval_every_needs_a_metric_for_non_synthetic_data(tmp_path, one_level_run):
    _, data = one_level_run
    plain = _flat_copy(data, tmp_path / "plain", 2)
    p = _train("--level", "1", "--data", str(plain), "--out", str(tmp_path / "run"),
               "--eval-every", "5")
    _one_line_error(p, "--i3d")
    assert not (tmp_path / "run" / "level1" / "checkpoint.pt").exists()


@pytest.mark.parametrize("codec,ext,decoded", [("vp9", ".webm", "vp9"), ("mjpeg", ".avi", "mjpeg"),
                                               ("h264", ".mp4", "h264")])
def test_data_synth_writes_the_codec_asked(tmp_path, codec, ext, decoded):
    """`cvg data synth --codec`: DALI's CPU reader decodes only VP8/VP9/MJPEG; tests need them."""
    from cvg_fast.data.video_io import probe_video

    root = tmp_path / codec
    p = _cvg("data", "synth", str(root), "--classes", "2", "--videos-per-class", "1",
             "--frames", "6", "--size", "16", "--codec", codec)
    assert p.returncode == 0, p.stderr
    files = sorted(root.rglob(f"*{ext}"))
    assert len(files) == 2
    info = probe_video(files[0])
    assert info.codec == decoded and info.frames == 6


def test_data_synth_rejects_an_unknown_codec(tmp_path):
    p = _cvg("data", "synth", str(tmp_path / "x"), "--codec", "h263")
    assert p.returncode == 2 and "invalid choice" in p.stderr
