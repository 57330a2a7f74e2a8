"""`cvg bench generate`: the naive pipeline equals generate() in fp32, child measurements,
the report's last line, one-line errors."""

import argparse
import json
import re

import numpy as np
import pytest

from cvg_fast.bench_generate import (
    LAST_LINE, add_arguments, bench_generate, build_cascade, naive_generate, parse_lengths,
    run_from_args,
)
from cvg_fast.errors import CvgError, run_main
from cvg_fast.sampling.generate import generate


@pytest.fixture(scope="module")
def cascade():
    """tiny's random cascade with its upscaler's learned branch and noise switched on
    (both start at 0: without this level 2 is a plain resize and its noise is unused)."""
    cas = build_cascade("tiny", seed=0)
    for g in cas.generators[1:]:
        g.residual_gain.data.fill_(0.05)
        g.noise_gain.data.fill_(0.5)
    return cas


@pytest.mark.parametrize("frames", [22, 21, 3])
def test_naive_equals_generate_fp32(cascade, frames):
    # tiny: level 2 doubles time over 4-frame windows. 22 frames -> level 1 makes 11, windows
    # start at 0, 4, 7: the last is end-aligned and shares a frame with the one before (cut in
    # the middle); 21 drops the last top frame; 3 is shorter than one window
    ours = generate(cascade, num_videos=3, frames=frames, seed=5, amp="none",
                    channels_last=False, progress=False)
    naive = naive_generate(cascade, num_videos=3, frames=frames, seed=5)
    assert naive.shape == ours.shape == (3, frames, 32, 32, 3) and naive.dtype == np.uint8
    diff = np.abs(naive.astype(np.int16) - ours.astype(np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    # the seed matters (the comparison is not between two constant videos)
    other = naive_generate(cascade, num_videos=3, frames=frames, seed=6)
    assert np.abs(other.astype(np.int16) - naive).mean() > 1


def test_naive_writes_one_mp4_per_video(cascade, tmp_path):
    from cvg_fast.data.video_io import probe_video

    paths = naive_generate(cascade, num_videos=2, frames=6, seed=0, out=tmp_path, fps=8)
    assert [p.name for p in paths] == ["video_0000_class0.mp4", "video_0001_class1.mp4"]
    assert all(probe_video(p).frames == 6 for p in paths)


def test_children_measure_and_last_line(tmp_path):
    res = bench_generate(preset="tiny", lengths="8", compare_at=8, num_videos=2,
                         device="cpu", threads=1, json_path=tmp_path / "g.json", timeout=300)
    assert [r.frames for r in res.rows] == [8]
    row = res.rows[0]
    assert row.skipped == {}
    for d, pipeline in ((row.ours, "ours"), (row.naive, "naive")):
        assert d["pipeline"] == pipeline and d["frames"] == 8 and d["num_videos"] == 2
        assert d["seconds"] > 0 and d["frames_per_s"] == pytest.approx(16 / d["seconds"])
        # a fresh process: torch's RSS, at least the setup's, not a parent's leftover
        assert 50 * 1024 < d["setup_rss_kib"] <= d["peak_rss_kib"] < 16 * 2 ** 20
        assert d["videos_written"] == 2 and d["mp4_bytes"] > 0 and d["torch_threads"] == 1
        assert d["cuda_peak_bytes"] is None
    assert row.naive["precision"].startswith("fp32")
    assert row.ratio == pytest.approx(row.ours["frames_per_s"] / row.naive["frames_per_s"])

    text = res.report()
    last = text.splitlines()[-1]
    assert LAST_LINE.match(last), last
    assert re.match(r"^generate vs naive at \d+ frames: \d+\.\d\dx frames/s$", last)
    assert last == f"generate vs naive at 8 frames: {row.ratio:.2f}x frames/s"
    assert "threads 1" in text and "32px" in text and "fp32" in text
    assert "peak RSS ours at 16384 vs 256: n/a" in text

    data = json.loads((tmp_path / "g.json").read_text())
    assert data["settings"]["lengths"] == [8] and data["settings"]["preset"] == "tiny"
    assert data["rows"][0]["ours"]["frames_per_s"] == row.ours["frames_per_s"]
    assert data["compare_line"] == last and data["machine"]["device"] == "cpu"


def test_naive_above_cap_is_skipped_with_reason(tmp_path):
    res = bench_generate(lengths=[4, 8], compare_at=4, naive_max_frames=4, pipelines=("naive",),
                         json_path=None, out=None, threads=1, timeout=300)
    r4, r8 = res.rows
    assert r4.naive is not None and r8.naive is None
    assert "--naive-max-frames 4" in r8.skipped["naive"]
    assert "8 frames, naive: skipped" in res.report()


@pytest.mark.parametrize("argv, msg", [
    (["--lengths", "64,0"], "--lengths"),
    (["--lengths", "abc"], "--lengths"),
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--compare-at", "0"], "--compare-at"),
])
def test_bad_arguments_one_line_error(argv, msg, capsys, tmp_path):
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(argv + ["--out", str(tmp_path)])
    with pytest.raises(CvgError, match=re.escape(msg)):
        run_from_args(args)
    assert run_main(lambda a: run_from_args(args)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and msg in err
    assert not list(tmp_path.iterdir())  # nothing measured, nothing written


def test_parse_lengths():
    assert parse_lengths("1024, 64,256,64") == [64, 256, 1024]
    with pytest.raises(CvgError):
        parse_lengths("")
