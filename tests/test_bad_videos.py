"""Bad video input never crashes a run mid-epoch and is never hidden.

Unusual but good files (variable frame rate, odd sizes, grayscale, 10-bit) decode
right. Files that cannot give a clip are, without --skip-bad-videos, ONE line naming
the file and the flag; with it, skipped with a counted warning, listed in
`VideoFolder.skipped_at_start`, in each item's "skipped" (read time, from DataLoader
workers) and in the trainer's end-of-run report. Fixtures: tests/bad_videos.py.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import bad_videos as B
from cvg_fast.data import VideoFolder, probe_video, read_clip, write_video
from cvg_fast.data.video_folder import parse_skipped
from cvg_fast.errors import CvgError
from cvg_fast.training.bad_videos import BadVideoTally
from cvg_fast.training.data import ForkSafeDataLoader, worker_error

FLAG = "--skip-bad-videos"


def _one_line(exc: BaseException, *fragments) -> str:
    msg = str(exc)
    assert "\n" not in msg, msg
    for frag in fragments:
        assert str(frag) in msg, f"{frag!r} not in {msg!r}"
    return msg


def _build(root, clip=8, **kw):
    """VideoFolder and the warnings its construction gave."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ds = VideoFolder(root, clip_frames=clip, size=16, progress=False, **kw)
    return ds, [str(w.message) for w in rec]


# --------------------------------------------------------------------------- unusual, good


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_variable_frame_rate_decodes_every_frame_in_order(tmp_path, ext):
    path, pts = B.vfr_video(tmp_path / f"vfr.{ext}")
    assert len(set(np.diff(pts))) == 3  # really irregular: 1/60, 1/30 and 1/15 s steps
    assert probe_video(path).frames == 40
    assert B.frame_ids(read_clip(path, 0, 40, 1, None)) == list(range(40))
    assert B.frame_ids(read_clip(path, 21, 5, 3, 8)) == [21, 24, 27, 30, 33]  # seek path


def test_odd_size_keeps_its_size_and_picture(tmp_path):
    path, src = B.odd_size_video(tmp_path / "odd.mp4", h=47, w=33)
    info = probe_video(path)
    assert (info.frames, info.width, info.height) == (12, 33, 47)
    got = read_clip(path, 0, 12, 1, None)
    assert got.shape == (12, 47, 33, 3)
    assert np.abs(got.astype(int) - src).mean() < 3
    assert read_clip(path, 2, 4, 2, 9).shape == (4, 9, 9, 3)


@pytest.mark.parametrize("name,codec", [("gray.mkv", "ffv1"), ("gray.mp4", "libx264")])
def test_grayscale_gives_equal_channels_and_the_right_levels(tmp_path, name, codec):
    path, src = B.gray_video(tmp_path / name, codec=codec)
    info = probe_video(path)
    assert (info.frames, info.width, info.height) == (12, 32, 24)
    for clip in (read_clip(path, 0, 12, 1, None), read_clip(path, 1, 5, 2, 16)):
        clip = clip.astype(int)
        assert np.array_equal(clip[..., 0], clip[..., 1])
        assert np.array_equal(clip[..., 1], clip[..., 2])
    full = read_clip(path, 0, 12, 1, None).astype(int)
    assert np.abs(full - src).max() <= 1  # both encodes are lossless: no range stretch


def test_ten_bit_gives_the_picture_of_its_eight_bit_twin(tmp_path):
    p10, p8, src = B.ten_bit_pair(tmp_path)
    with av.open(str(p10)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
    assert probe_video(p10).frames == probe_video(p8).frames == 12
    a = read_clip(p10, 0, 12, 1, None).astype(int)
    b = read_clip(p8, 0, 12, 1, None).astype(int)
    assert a.shape == b.shape == (12, 24, 32, 3)
    # 4:2:0 chroma rounding differs by a few levels; a misread depth or range is 10x more
    assert np.abs(a - b).mean() < 2.5 and np.abs(a - b).max() <= 10
    assert np.abs(a - src).mean() < 3
    small10, small8 = read_clip(p10, 3, 4, 2, 16), read_clip(p8, 3, 4, 2, 16)
    assert np.abs(small10.astype(int) - small8).mean() < 1


# --------------------------------------------------------------------------- bad, one by one

# name -> maker; every one of them cannot give an 8-frame clip
BAD_MAKERS = {
    "truncated.mp4": lambda p: B.truncated_mp4(p),  # index at the end, lost
    "truncated.avi": lambda p: B.truncated_avi(p, frames=12, keep=0.4),  # ~4 frames left
    "garbage.mp4": lambda p: B.header_garbage(p, "text"),
    "noise.mkv": lambda p: B.header_garbage(p, "noise"),
    "empty.mp4": B.zero_length,
    "short.mp4": lambda p: B.short_video(p, 5),
    "link.mp4": B.broken_symlink,
    "frames.mp4": B.folder_named_like_video,
    "pipe.mp4": B.fifo,
}
REASONS = {"empty.mp4": "empty file, 0 bytes", "frames.mp4": "a folder, not a video file",
           "pipe.mp4": "a named pipe", "short.mp4": "only 5 frames", "link.mp4": "No such file",
           "truncated.avi": "frames, a clip needs 8"}


@pytest.mark.parametrize("name", sorted(BAD_MAKERS))
def test_each_bad_file_is_one_line_or_skipped_with_a_count(tmp_path, name):
    root = tmp_path / "ds"
    root.mkdir()
    good = write_video(root / "good.mp4", B.indexed_frames(12), 10)
    bad = BAD_MAKERS[name](root / name)
    with B.FifoGuard(*root.glob("pipe.mp4")) as guard:  # a read would block forever
        with pytest.raises(CvgError) as e:
            VideoFolder(root, clip_frames=8, size=16, progress=False)
        _one_line(e.value, str(bad), FLAG)
        ds, msgs = _build(root, skip_bad=True)
    assert guard.opened == [], "a named pipe was opened for reading"
    assert len(msgs) == 1 and "skipping 1 of 2 videos" in msgs[0] and name in msgs[0], msgs
    assert [v.path for v in ds.videos] == [str(good)]
    assert [p for p, _ in ds.skipped_at_start] == [str(bad)]
    reason = ds.skipped_at_start[0][1]
    assert "\n" not in reason and "\t" not in reason and FLAG not in reason
    assert REASONS.get(name, "not a readable video") in reason


def test_truncated_faststart_mp4_keeps_the_frames_before_the_cut(tmp_path):
    """Not every damaged file is bad: with the index first, a cut copy is a shorter video."""
    path = B.truncated_mp4(tmp_path / "cut.mp4", frames=40, keep=0.6, faststart=True)
    n = probe_video(path).frames
    assert 15 < n < 30
    assert read_clip(path, n - 8, 8, 1, 16).shape == (8, 16, 16, 3)
    with pytest.raises(CvgError) as e:
        read_clip(path, n - 7, 8, 1, 16)
    _one_line(e.value, "cut.mp4", f"only {n} frames", FLAG)


def test_a_folder_with_nothing_usable_is_one_clear_error(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    for name in ("garbage.mp4", "empty.mp4", "short.mp4", "link.mp4", "frames.mp4"):
        BAD_MAKERS[name](root / name)
    for skip_bad in (False, True):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            with pytest.raises(CvgError) as e:
                VideoFolder(root, clip_frames=8, size=16, skip_bad=skip_bad, progress=False)
        msg = _one_line(e.value, "no usable videos", str(root), "all 5", "unreadable (4)",
                        "shorter than 8 frames (1)", "e.g. empty.mp4 (empty file")
        assert FLAG not in msg  # skipping cannot help: do not suggest it
        assert not rec  # the error says it all, no warning before it


# --------------------------------------------------------------------------- all together


def test_mixed_folder_keeps_exactly_the_good_files(tmp_path):
    root = tmp_path / "mixed"
    kinds = B.mixed_folder(root)
    good = sorted(n for n, k in kinds.items() if k == B.GOOD)
    bad = sorted(n for n, k in kinds.items() if k == B.BAD)
    with B.FifoGuard(root / "pipe.mp4") as guard:
        with pytest.raises(CvgError) as e:
            VideoFolder(root, clip_frames=B.MIXED_CLIP, size=16, progress=False)
        ds, msgs = _build(root, clip=B.MIXED_CLIP, skip_bad=True)
    assert guard.opened == []
    msg = _one_line(e.value, FLAG, f"{len(bad) - 1} other videos are bad too")
    assert any(name in msg for name in bad)
    assert len(msgs) == 1, msgs
    assert f"skipping {len(bad)} of {len(kinds)} videos" in msgs[0]
    assert sorted(Path(v.path).name for v in ds.videos) == good
    assert sorted(Path(p).name for p, _ in ds.skipped_at_start) == bad
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        items = [ds[(i, 0)] for i in range(len(ds))]
    for info, item in zip(ds.videos, items):  # every kept file gives a clip
        assert item["video"].shape == (B.MIXED_CLIP, 3, 16, 16)
        assert torch.isfinite(item["video"]).all()
        skipped = [Path(p).name for p, _ in parse_skipped(item["skipped"])]
        # corrupt.mp4 probes fine, fails when read and hands its item to the next video
        assert skipped == (["corrupt.mp4"] if Path(info.path).name == "corrupt.mp4" else [])
    assert len(rec) == 1 and "corrupt.mp4: decoding failed" in str(rec[0].message)


# --------------------------------------------------------------------------- read time


def _damaged_folder(root: Path) -> Path:
    """a.mp4, b.mp4 (damaged from frame 10 on: probes fine, no clip decodes), c.mp4."""
    root.mkdir()
    for name in ("a", "c"):
        write_video(root / f"{name}.mp4", B.indexed_frames(20), 10)
    B.corrupt_mp4(root / "b.mp4", frames=20, first=10)
    return root


@pytest.mark.parametrize("fill", ["zeros", "random"])
def test_corrupt_packets_pass_the_probe_and_fail_the_read_in_one_line(tmp_path, fill):
    path = B.corrupt_mp4(tmp_path / f"{fill}.mp4", frames=20, first=10, fill=fill)
    assert probe_video(path).frames == 20  # headers, index and first frame are intact
    assert read_clip(path, 0, 4, 1, 16).shape == (4, 16, 16, 3)  # before the damage
    with pytest.raises(CvgError) as e:
        read_clip(path, 4, 12, 1, 16)
    _one_line(e.value, str(path), "decoding failed", FLAG)


def test_read_time_failure_is_named_and_counted(tmp_path):
    root = _damaged_folder(tmp_path / "ds")
    strict = VideoFolder(root, clip_frames=12, size=16, progress=False)
    assert [Path(v.path).name for v in strict.videos] == ["a.mp4", "b.mp4", "c.mp4"]
    assert strict.skipped_at_start == []
    with pytest.raises(CvgError) as e:
        strict[(1, 3)]
    _one_line(e.value, "b.mp4", "decoding failed", FLAG)
    assert strict[(0, 3)]["skipped"] == ""

    lenient = VideoFolder(root, clip_frames=12, size=16, skip_bad=True, progress=False)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        item = lenient[(1, 3)]
        lenient[(1, 4)]
    assert len(rec) == 1 and "b.mp4" in str(rec[0].message)  # once per process
    assert torch.equal(item["video"], lenient[(2, 3)]["video"])  # c.mp4's clip in its place
    (path, reason), = parse_skipped(item["skipped"])
    assert path == str(root / "b.mp4") and reason.startswith("decoding failed")

    lenient.warn_on_read = False  # a consumer that reports "skipped" itself
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        assert parse_skipped(lenient[(1, 5)]["skipped"])[0][0] == path
    assert rec == []


def test_read_time_failures_reach_the_main_process_from_workers(tmp_path):
    root = _damaged_folder(tmp_path / "ds")
    keys = [(i, 7) for i in range(3)]
    lenient = VideoFolder(root, clip_frames=12, size=16, skip_bad=True, progress=False)
    tally = BadVideoTally(lenient)  # as the trainer does, before workers copy the dataset
    assert lenient.warn_on_read is False  # the tally warns, counted, in the main process
    batch = next(iter(ForkSafeDataLoader(lenient, batch_size=3, sampler=keys, num_workers=1)))
    assert batch["video"].shape == (3, 12, 3, 16, 16)
    assert isinstance(batch["skipped"], list) and batch["skipped"][0] == ""
    assert batch["skipped"][2] == ""
    assert [p for p, _ in parse_skipped(batch["skipped"][1])] == [str(root / "b.mp4")]
    with pytest.warns(UserWarning, match=r"b\.mp4: decoding failed.*1 bad video\(s\) met"):
        tally.add(batch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tally.add(batch)  # the same file again: no second warning
    assert list(tally.in_training) == [str(root / "b.mp4")]

    strict = VideoFolder(root, clip_frames=12, size=16, progress=False)
    loader = ForkSafeDataLoader(strict, batch_size=3, sampler=keys, num_workers=1)
    with pytest.raises(CvgError) as e:
        next(iter(loader))
    assert "\n" in str(e.value)  # torch wraps a worker's error with its traceback ...
    _one_line(worker_error(e.value), str(root / "b.mp4"), "decoding failed", FLAG)  # ... undone


def test_report_lists_both_kinds_and_removes_a_stale_list(tmp_path, capsys):
    class Data:
        skipped_at_start = [("/d/short.mp4", "only 5 frames, a clip needs 8")]

    tally = BadVideoTally(Data())
    with pytest.warns(UserWarning):
        tally.add({"skipped": ["", "/d/b.mp4\tdecoding failed (x)"]})
    bad = tally.finish(tmp_path)
    assert bad == [("/d/short.mp4", "at indexing: only 5 frames, a clip needs 8"),
                   ("/d/b.mp4", "while training: decoding failed (x)")]
    assert (tmp_path / "bad_videos.txt").read_text().splitlines() == [
        "/d/short.mp4\tat indexing: only 5 frames, a clip needs 8",
        "/d/b.mp4\twhile training: decoding failed (x)"]
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"skipped 2 bad videos: 1 at indexing (unreadable/too short), 1 while "
                   f"training; list in {tmp_path / 'bad_videos.txt'}"]
    assert BadVideoTally(object()).finish(tmp_path) == []
    assert not (tmp_path / "bad_videos.txt").exists() and capsys.readouterr().out == ""


# --------------------------------------------------------------------------- training


def test_training_on_a_folder_with_bad_videos_reports_them(tmp_path, capsys):
    """2 steps of the tiny preset (narrow nets) with a loader worker: 3 files dropped at
    indexing, 1 that fails in the worker while training; all in TrainResult and the list."""
    from conftest import narrow_tiny

    from cvg_fast.training import train_level

    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        write_video(data / f"good{i}.mp4", B.indexed_frames(20), 8)
    B.corrupt_mp4(data / "corrupt.mp4", frames=20, first=10)  # probes fine, no clip decodes
    cfg = narrow_tiny()
    cfg.train.steps, cfg.train.batch_size, cfg.train.num_workers = 2, 2, 1
    # 2 steps x 2 clips: one epoch of the 4 usable videos, so corrupt.mp4 is read
    run = tmp_path / "run"
    with pytest.raises(CvgError) as e:  # fails in the worker, reaches the user as one line
        train_level(cfg, 1, data, run, device="cpu", progress=False)
    _one_line(e.value, str(data / "corrupt.mp4"), "decoding failed", FLAG)
    B.header_garbage(data / "garbage.mp4")
    B.zero_length(data / "empty.mp4")
    B.short_video(data / "short.mp4", 5)
    with pytest.raises(CvgError) as e:  # fails at indexing
        train_level(cfg, 1, data, run, device="cpu", progress=False)
    _one_line(e.value, FLAG, "2 other videos are bad too")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        result = train_level(cfg, 1, data, run, device="cpu", progress=False,
                             skip_bad_videos=True, overwrite=True)
    assert result.steps == 2
    by_name = {Path(p).name: r for p, r in result.bad_videos}
    assert sorted(by_name) == ["corrupt.mp4", "empty.mp4", "garbage.mp4", "short.mp4"]
    assert by_name["corrupt.mp4"].startswith("while training: decoding failed")
    assert by_name["empty.mp4"] == "at indexing: not a readable video (empty file, 0 bytes)"
    assert by_name["short.mp4"] == "at indexing: only 5 frames, a clip needs 16"
    lines = (run / "level1" / "bad_videos.txt").read_text().splitlines()
    assert lines == [f"{p}\t{r}" for p, r in result.bad_videos]
    out = capsys.readouterr().out
    assert (f"skipped 4 bad videos: 3 at indexing (unreadable/too short), 1 while training; "
            f"list in {run / 'level1' / 'bad_videos.txt'}") in out
    msgs = [str(w.message) for w in rec]
    assert sum("skipping 3 of 7 videos" in m for m in msgs) == 1
    assert sum("corrupt.mp4" in m and "1 bad video(s) met while training" in m
               for m in msgs) == 1, msgs
    assert os.path.isfile(run / "level1" / "checkpoint.pt")
