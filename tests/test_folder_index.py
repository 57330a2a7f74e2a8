"""`cvg data index`: a folder's summary, its failures, and the index cache it shares."""

import shutil

import pytest

from cvg_fast.data import video_folder, write_synthetic_dataset
from cvg_fast.data.folder_index import index_folder

from test_cli import _cvg, _one_line_error


@pytest.fixture
def damaged(tmp_path):
    root = write_synthetic_dataset(tmp_path / "d", num_classes=2, videos_per_class=2, frames=6,
                                   size=16, progress=False)
    a, b = sorted(p for p in root.iterdir() if p.is_dir())
    (a / "broken.mp4").write_bytes(b"not a video at all")
    (b / "empty.mp4").write_bytes(b"")
    good = next(b.glob("*.mp4"))
    data = good.read_bytes()
    (b / "truncated.mp4").write_bytes(data[: len(data) // 3])
    return root


def test_report_counts_videos_classes_frames_and_names_every_failure(damaged):
    index = index_folder(damaged, progress=False)
    report = index.report()
    assert report.splitlines()[0].endswith(": 7 videos, 2 classes")
    assert "readable: 4 videos, 24 frames in all" in report
    assert "codecs: h264 (4)" in report and "sizes: 16x16 (4)" in report
    assert "frame rates: 8 fps (4)" in report
    bad = dict(index.failures)
    assert set(bad) == {f"{p.parent.name}/{p.name}" for p in damaged.rglob("*.mp4")
                        if p.name in ("broken.mp4", "empty.mp4", "truncated.mp4")}
    assert "unreadable: 3:" in report
    assert all(rel in report for rel in bad)


def test_the_index_cache_is_reused_and_follows_edits(damaged, monkeypatch):
    first = index_folder(damaged, progress=False)
    assert first.cache and first.cache.endswith("data_index.json")
    calls = []
    original = video_folder._probe_one
    monkeypatch.setattr(video_folder, "_probe_one", lambda p: calls.append(p) or original(p))
    again = index_folder(damaged, progress=False)
    assert calls == [] and again.report() == first.report()
    fixed = next(damaged.rglob("broken.mp4"))
    shutil.copy(next(damaged.rglob("*_0000.mp4")), fixed)  # repaired: probed again, alone
    third = index_folder(damaged, progress=False)
    assert calls == [str(fixed)]
    assert len(third.videos) == 5 and len(third.failures) == 2


def test_flat_folder_is_unconditional(tmp_path):
    root = write_synthetic_dataset(tmp_path / "s", num_classes=1, videos_per_class=2, frames=6,
                                   size=16, progress=False)
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in root.rglob("*.mp4"):
        shutil.copy(p, flat / p.name)
    report = index_folder(flat, progress=False, use_cache=False).report()
    assert "2 videos, flat folder (unconditional)" in report and "unreadable: 0" in report


def test_cli_prints_the_summary_and_errors_in_one_line(damaged, tmp_path):
    p = _cvg("data", "index", str(damaged), "--no-progress")
    assert p.returncode == 0, p.stderr
    assert "7 videos, 2 classes" in p.stdout and "empty.mp4" in p.stdout
    _one_line_error(_cvg("data", "index", str(tmp_path / "nowhere")), "does not exist")


def test_indexing_one_subset_keeps_the_others_cache_entries(damaged, monkeypatch, tmp_path):
    """Indexing split A, then B, then A again probes A once (B's rewrite keeps A's entries)."""
    rels = sorted(str(p.relative_to(damaged)) for p in damaged.rglob("*.mp4"))
    a, b = rels[: len(rels) // 2], rels[len(rels) // 2:]
    cache = tmp_path / "index.json"
    calls = []
    original = video_folder._probe_one
    monkeypatch.setattr(video_folder, "_probe_one", lambda p: calls.append(p) or original(p))
    first = video_folder.probe_videos(str(damaged), a, cache, progress=False)
    video_folder.probe_videos(str(damaged), b, cache, progress=False)
    probed = len(calls)  # every file that needed opening (empty files fail on stat alone)
    assert probed >= len(rels) - 2 and len(set(calls)) == probed
    again = video_folder.probe_videos(str(damaged), a, cache, progress=False)
    assert len(calls) == probed and again == first


def test_mixed_codecs_and_containers_are_summarised(tmp_path):
    """Old camera/film codecs side by side: every file readable, each codec counted."""
    import numpy as np

    from cvg_fast.data import write_video

    root = tmp_path / "mixed"
    root.mkdir()
    frames = np.random.default_rng(0).integers(0, 255, (10, 24, 32, 3), dtype=np.uint8)
    kinds = {"a.mp4": "libx264", "b.avi": "mpeg4", "c.avi": "mjpeg", "d.webm": "libvpx-vp9",
             "e.mpg": "mpeg2video", "f.mkv": "ffv1"}
    for name, codec in kinds.items():
        write_video(root / name, frames, fps=25, codec=codec)
    report = index_folder(root, use_cache=False, progress=False).report()
    assert "6 videos, flat folder (unconditional)" in report
    assert "unreadable: 0" in report and "60 frames in all" in report
    for codec in ("h264", "mpeg4", "mjpeg", "vp9", "mpeg2video", "ffv1"):
        assert f"{codec} (1)" in report, (codec, report)
