"""cvg_fast.data: PyAV video I/O, VideoFolder, the synthetic dataset.

Every video here is tiny and written by the test itself (tmp_path), so the file runs
in seconds. Frame identity is checked through content: in `_indexed_frames` frame i
is a flat grey of level 10 + 6*i, which every codec keeps within +-3.
"""

from __future__ import annotations

import json
import os
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from cvg_fast.data import (
    VideoFolder,
    VideoWriter,
    probe_video,
    read_clip,
    save_frame_grid_png,
    synthetic_class_names,
    write_synthetic_dataset,
    write_video,
)
from cvg_fast.data import video_io
from cvg_fast.data.synthetic import COLOURS
from cvg_fast.errors import CvgError
from cvg_fast.training.data import ForkSafeDataLoader

# --------------------------------------------------------------------------- helpers


def _indexed_frames(n: int, h: int = 24, w: int = 32) -> np.ndarray:
    """uint8 (n, h, w, 3); frame i is flat grey 10 + 6*i (n <= 40)."""
    levels = 10 + 6 * np.arange(n)
    return np.broadcast_to(levels[:, None, None, None], (n, h, w, 3)).astype(np.uint8)


def _frame_ids(clip: np.ndarray) -> list[int]:
    """Inverse of `_indexed_frames` on decoded frames."""
    return [int(round((float(f.mean()) - 10) / 6)) for f in clip]


def _write_raw(path, codec, frames, fps=25, pix_fmt="yuv420p", gop=6, pts=None, time_base=None,
               rotation=None, sar=None, options=None):
    """Plain PyAV writer for cases VideoWriter does not make: short GOPs (real seeks),
    irregular timestamps (VFR), rotation / pixel-aspect metadata."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.height, s.width = frames.shape[1:3]
        s.pix_fmt = pix_fmt
        s.codec_context.gop_size = gop
        if time_base is not None:
            s.codec_context.time_base = time_base
            s.time_base = time_base
        if rotation is not None:
            s.set_display_rotation(rotation)
        if sar is not None:
            s.codec_context.sample_aspect_ratio = sar
        if codec in ("mpeg4", "mjpeg", "mpeg1video", "mpeg2video"):
            s.codec_context.qscale = True
            s.codec_context.global_quality = 2 * 118  # -q:v 2, as VideoWriter does
        if options:
            s.options = options
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            if pts is not None:
                f.pts, f.time_base = pts[i], time_base
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return Path(path)


def _one_line_error(excinfo, *fragments):
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for frag in fragments:
        assert str(frag) in msg, f"{frag!r} not in {msg!r}"
    return msg


def _no_sequential(monkeypatch):
    """Make decoding-from-the-start fail, to prove the seek path did the work."""

    def boom(*a, **k):
        raise AssertionError("fell back to decoding from the start")

    monkeypatch.setattr(video_io, "_read_sequential", boom)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "data"
    return write_synthetic_dataset(root, num_classes=4, videos_per_class=3, frames=20, size=32,
                                   fps=8, seed=0, progress=False)


# --------------------------------------------------------------------------- synthetic


def test_synthetic_layout_and_decode(synth):
    names = synthetic_class_names(4)
    assert names[0] == "00_red_circle_right" and len(set(names)) == 4
    # the class folders and the hidden manifest, nothing else
    assert sorted(os.listdir(synth)) == [".synthetic.json", *names]
    for name in names:
        files = sorted(os.listdir(synth / name))
        assert len(files) == 3 and all(f.endswith(".mp4") for f in files)
        for f in files:
            info = probe_video(synth / name / f)
            assert (info.frames, info.width, info.height, info.codec) == (20, 32, 32, "h264")
            assert info.fps == pytest.approx(8)
            assert read_clip(info.path, 0, 20, 1, None).shape == (20, 32, 32, 3)


def _foreground(video: np.ndarray) -> np.ndarray:
    """Shape pixels: bright (backgrounds stay below ~80, shape colours peak >= 205)."""
    return video.max(axis=-1) > 120


def test_synthetic_classes_have_their_colour_and_move(synth):
    for k, name in enumerate(synthetic_class_names(4)):
        nominal = np.array(COLOURS[k][1], float)
        for f in sorted(os.listdir(synth / name)):
            v = read_clip(synth / name / f, 0, 20, 1, None)
            fg = _foreground(v)
            assert fg.any(axis=(1, 2)).all(), "shape visible in every frame"
            # fully on screen: never touches the border
            border = fg[:, 0].any() or fg[:, -1].any() or fg[:, :, 0].any() or fg[:, :, -1].any()
            assert not border
            mean = v[fg].mean(axis=0)
            dists = [np.linalg.norm(mean - np.array(c, float)) for _, c in COLOURS[:4]]
            assert int(np.argmin(dists)) == k, (name, mean)
            assert np.linalg.norm(mean - nominal) < 80  # edges: chroma is 4:2:0
            ys, xs = np.mgrid[0:32, 0:32]
            cy = (fg * ys).sum((1, 2)) / fg.sum((1, 2))
            cx = (fg * xs).sum((1, 2)) / fg.sum((1, 2))
            step = np.hypot(np.diff(cx), np.diff(cy))
            assert step.min() > 0.9, f"{name}/{f}: a frame without motion ({step.min():.2f} px)"
            step2 = np.hypot(cx[2:] - cx[:-2], cy[2:] - cy[:-2])
            assert step2.min() > 0.9, "every-2nd-frame subsampling must still move"
            assert step.max() < 32 / 10 + 1.5  # at most ~size/10 px per frame


def test_synthetic_motion_patterns(synth):
    """Class 0 moves horizontally only, class 1 vertically only."""
    for k, axis_static in ((0, "y"), (1, "x")):
        name = synthetic_class_names(4)[k]
        v = read_clip(next(iter(sorted((synth / name).iterdir()))), 0, 20, 1, None)
        fg = _foreground(v)
        ys, xs = np.mgrid[0:32, 0:32]
        cy = (fg * ys).sum((1, 2)) / fg.sum((1, 2))
        cx = (fg * xs).sum((1, 2)) / fg.sum((1, 2))
        static, moving = (cy, cx) if axis_static == "y" else (cx, cy)
        assert np.ptp(static) < 0.6 and np.ptp(moving) > 5


def test_synthetic_is_deterministic(tmp_path):
    # 24 videos of the demo's size: x264 with its SIMD paths differed on ~1 in 4 of these
    kw = dict(num_classes=4, videos_per_class=6, frames=48, size=32, progress=False)
    a = write_synthetic_dataset(tmp_path / "a", seed=3, **kw)
    b = write_synthetic_dataset(tmp_path / "b", seed=3, **kw)
    c = write_synthetic_dataset(tmp_path / "c", seed=4, **kw)
    for name in synthetic_class_names(4):
        for fa in sorted((a / name).iterdir()):
            assert fa.read_bytes() == (b / name / fa.name).read_bytes(), fa.name
        fa, fc = sorted((a / name).iterdir())[0], sorted((c / name).iterdir())[0]
        assert not np.array_equal(read_clip(fa, 0, 8, 1, None), read_clip(fc, 0, 8, 1, None))


def test_synthetic_refuses_non_empty_root(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("x")
    with pytest.raises(CvgError) as e:
        write_synthetic_dataset(tmp_path / "d", num_classes=1, videos_per_class=1, frames=4,
                                progress=False)
    _one_line_error(e, "not an empty folder")
    assert os.listdir(tmp_path / "d") == ["keep.txt"]
    assert [p for p in os.listdir(tmp_path) if p != "d"] == []  # no partial dataset left


# --------------------------------------------------------------------------- read_clip


CONTAINERS = [
    ("mp4", "libx264", "yuv420p"),  # B-frames: pts != dts
    ("mov", "libx264", "yuv420p"),
    ("avi", "mpeg4", "yuv420p"),
    ("avi", "mjpeg", "yuvj420p"),  # full-range "J" pixel format
    ("mkv", "ffv1", "yuv420p"),  # mkv: stream.frames == 0
    ("mkv", "libx264", "yuv420p10le"),  # 10-bit
    ("webm", "libvpx-vp9", "yuv420p"),
    ("webm", "libvpx", "yuv420p"),
    ("mkv", "ffv1", "gray"),
    ("ts", "mpeg2video", "yuv420p"),  # broadcast: pts start at 1.4 s, no frame count
    ("mpg", "mpeg1video", "yuv420p"),  # r_frame_rate != avg rate: located via the pts table
]


@pytest.mark.parametrize("ext,codec,pix_fmt", CONTAINERS)
def test_read_clip_containers(tmp_path, monkeypatch, ext, codec, pix_fmt):
    path = _write_raw(tmp_path / f"v.{ext}", codec, _indexed_frames(40), pix_fmt=pix_fmt, gop=6,
                      fps=Fraction(30000, 1001) if ext == "mov" else 25)
    info = probe_video(path)
    assert info.frames == 40 and (info.width, info.height) == (32, 24)
    if ext in ("mkv", "webm"):
        with av.open(str(path)) as c:
            assert c.streams.video[0].frames == 0  # the count came from demuxing packets
    full = read_clip(path, 0, 40, 1, None)
    assert full.shape == (40, 24, 32, 3) and full.dtype == np.uint8
    assert _frame_ids(full) == list(range(40))
    _no_sequential(monkeypatch)  # a clip starting at 17 must come from a seek
    clip = read_clip(path, 17, 6, 3, None)
    assert _frame_ids(clip) == [17, 20, 23, 26, 29, 32]
    assert np.abs(clip.astype(int) - full[17:35:3].astype(int)).max() <= 1
    assert _frame_ids(read_clip(path, 39, 1, 1, 8)) == [39]


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_read_clip_variable_frame_rate(tmp_path, monkeypatch, ext):
    rng = np.random.default_rng(1)
    tb = Fraction(1, 90000)
    pts = np.concatenate([[0], np.cumsum(rng.choice([1500, 3000, 3000, 6000], 39))]).tolist()
    path = _write_raw(tmp_path / f"vfr.{ext}", "libx264", _indexed_frames(40), fps=30, gop=5,
                      pts=pts, time_base=tb)
    assert probe_video(path).frames == 40
    expected = [21, 23, 25, 27, 29]
    assert _frame_ids(read_clip(path, 21, 5, 2, None)) == expected
    _no_sequential(monkeypatch)  # frames located through the demuxed pts table, not by decoding all
    assert _frame_ids(read_clip(path, 21, 5, 2, None)) == expected


def _bands(h: int, w: int, vertical: bool) -> np.ndarray:
    """Red | green | blue bands: quarter, half, quarter of the longer side."""
    img = np.zeros((h, w, 3), np.uint8)
    n = w if vertical else h
    a, b = n // 4, 3 * n // 4
    sl = (slice(None), slice(0, a)) if vertical else (slice(0, a), slice(None))
    img[sl] = (220, 20, 20)
    sl = (slice(None), slice(a, b)) if vertical else (slice(a, b), slice(None))
    img[sl] = (20, 220, 20)
    sl = (slice(None), slice(b, n)) if vertical else (slice(b, n), slice(None))
    img[sl] = (20, 20, 220)
    return img


@pytest.mark.parametrize("h,w", [(24, 48), (48, 24)])
@pytest.mark.parametrize("size", [12, 36])
def test_read_clip_resizes_shorter_side_and_center_crops(tmp_path, h, w, size):
    frames = np.stack([_bands(h, w, vertical=w > h)] * 4)
    path = write_video(tmp_path / "bands.mkv", frames, 10, codec="ffv1", pix_fmt="yuv444p")
    clip = read_clip(path, 1, 2, 1, size)
    assert clip.shape == (2, size, size, 3)
    # the centre crop of a 2:1 frame is exactly the green middle half
    assert clip[..., 1].min() > 180 and clip[..., 0].max() < 70 and clip[..., 2].max() < 70


def test_read_clip_odd_size_and_codecs(tmp_path):
    yy, xx = np.mgrid[0:17, 0:33]
    base = np.stack([xx * 7, yy * 14, np.full_like(xx, 90)], -1).astype(np.uint8)
    frames = np.stack([np.roll(base, t, axis=1) for t in range(12)])
    for name, codec in [("o.mp4", "libx264"), ("o.avi", "mpeg4"), ("o.mjpeg.avi", "mjpeg"),
                        ("o.mkv", "ffv1"), ("o.webm", "libvpx-vp9")]:
        path = write_video(tmp_path / name, frames, 8, codec=codec)
        info = probe_video(path)
        assert (info.frames, info.width, info.height) == (12, 33, 17), name
        got = read_clip(path, 0, 12, 1, None)
        assert got.shape == (12, 17, 33, 3), name
        assert np.abs(got.astype(int) - frames).mean() < 8, name
        assert read_clip(path, 3, 4, 2, 9).shape == (4, 9, 9, 3)


# camera, broadcast and web codecs of the 1990s-2000s: (file, codec, pix_fmt, coded w x h,
# fps, display width: the pixel aspect applied, as players show it)
OLD_CODECS = [
    ("pal.dv", "dvvideo", "yuv420p", 720, 576, 25, 768),  # DV camcorder, PAL 4:3
    ("phone.3gp", "h263", "yuv420p", 176, 144, 15, 192),  # QCIF, 12:11 pixels
    ("vcd.mpg", "mpeg1video", "yuv420p", 352, 240, 30, 352),
    ("dvd.mpg", "mpeg2video", "yuv420p", 352, 288, 25, 352),
    ("broadcast.ts", "mpeg2video", "yuv420p", 320, 240, 25, 320),
    ("web.flv", "flv", "yuv420p", 320, 240, 15, 320),
    ("win.wmv", "wmv2", "yuv420p", 320, 240, 15, 320),
    ("divx.avi", "msmpeg4v2", "yuv420p", 320, 240, 15, 320),
    ("cd-rom.mov", "cinepak", "rgb24", 160, 120, 15, 160),
    ("edit.mov", "prores", "yuv422p10le", 320, 240, 24, 320),
]


@pytest.mark.parametrize("name,codec,pix_fmt,w,h,fps,display_w", OLD_CODECS)
def test_old_camera_and_broadcast_codecs(tmp_path, name, codec, pix_fmt, w, h, fps, display_w):
    n = 12
    path = _write_raw(tmp_path / name, codec, _indexed_frames(n, h, w), fps=fps, pix_fmt=pix_fmt)
    info = probe_video(path)
    assert info.frames == n and info.fps == fps, (info.frames, info.fps)
    assert (info.width, info.height) == (display_w, h)
    assert _frame_ids(read_clip(path, 0, n, 1, None)) == list(range(n))
    assert _frame_ids(read_clip(path, 5, 3, 2, 16)) == [5, 7, 9]


def test_read_clip_applies_rotation_and_pixel_aspect(tmp_path):
    img = np.zeros((16, 32, 3), np.uint8)
    img[:8, :8] = 255  # white block top-left of the coded frame
    path = _write_raw(tmp_path / "rot.mp4", "libx264", np.stack([img] * 3), rotation=90)
    info = probe_video(path)
    assert (info.width, info.height, info.rotation) == (16, 32, 90)
    got = read_clip(path, 0, 3, 1, None)
    assert got.shape == (3, 32, 16, 3)
    # 90 degrees counter-clockwise: the block ends up bottom-left
    assert np.abs(got[0].astype(int) - np.rot90(img, 1)).mean() < 6
    assert got[0, 28, 3].min() > 200 and got[0, 3, 3].max() < 50

    sq = np.full((4, 32, 32, 3), 120, np.uint8)
    path = _write_raw(tmp_path / "anamorphic.mp4", "libx264", sq, sar=Fraction(2, 1))
    info = probe_video(path)
    assert (info.width, info.height) == (64, 32)
    assert read_clip(path, 0, 2, 1, None).shape == (2, 32, 64, 3)


def test_read_clip_errors(tmp_path):
    path = write_video(tmp_path / "ok.mp4", _indexed_frames(10), 10)
    with pytest.raises(CvgError) as e:
        read_clip(path, 8, 3, 1, None)  # needs frame 10 of 10
    _one_line_error(e, "ok.mp4", "only 10 frames")

    # header/index promise 60 frames; zeroed data ends the stream at frame 36
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (60, 48, 64, 3), dtype=np.uint8)
    for name, codec in [("damaged.avi", "mpeg4"), ("damaged.mp4", "libx264")]:
        src = write_video(tmp_path / name, noise, 25, codec=codec)
        data = bytearray(src.read_bytes())
        a, b = int(len(data) * 0.3), int(len(data) * 0.7)
        data[a:b] = bytes(b - a)
        src.write_bytes(bytes(data))
        assert probe_video(src).frames == 60  # the probe cannot see mid-stream damage
        with pytest.raises(CvgError) as e:
            read_clip(src, 0, 60, 1, 16)
        msg = _one_line_error(e, name, "--skip-bad-videos")
        if codec == "mpeg4":
            assert "only 36 frames" in msg and "reports 60" in msg
        else:
            assert "decoding failed" in msg


def test_probe_rejects_garbage_and_truncated(tmp_path):
    (tmp_path / "text.mp4").write_text("not a video at all\n" * 50)
    with pytest.raises(CvgError) as e:
        probe_video(tmp_path / "text.mp4")
    _one_line_error(e, "text.mp4", "not a readable video")
    good = write_video(tmp_path / "good.mp4", _indexed_frames(30), 10)
    data = good.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.4)])
    with pytest.raises(CvgError) as e:
        probe_video(tmp_path / "cut.mp4")
    _one_line_error(e, "cut.mp4", "not a readable video")
    with pytest.raises(CvgError) as e:
        probe_video(tmp_path / "missing.mp4")
    _one_line_error(e, "missing.mp4")


def test_probe_counts_frames_of_a_truncated_avi(tmp_path):
    """AVI cut short: the header still says 40 frames, the index is gone; the probe
    counts the packets that are really there."""
    src = write_video(tmp_path / "full.avi", np.random.default_rng(0).integers(
        0, 255, (40, 32, 32, 3), dtype=np.uint8), 10, codec="mpeg4")
    data = src.read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    with av.open(str(tmp_path / "cut.avi")) as c:
        assert c.streams.video[0].frames == 40
    n = probe_video(tmp_path / "cut.avi").frames
    assert 10 < n < 25
    assert read_clip(tmp_path / "cut.avi", n - 4, 4, 1, None).shape == (4, 32, 32, 3)


def test_probe_and_read_a_cut_short_faststart_mp4(tmp_path):
    """An interrupted download of a streaming mp4 (index first, data cut): the probe
    counts only complete frames, and every one of them decodes."""
    frames = np.random.default_rng(0).integers(0, 255, (40, 32, 32, 3), dtype=np.uint8)
    full = write_video(tmp_path / "full.mp4", frames, 10)  # VideoWriter writes mp4 faststart
    data = full.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # index before the data
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.6)])
    n = probe_video(tmp_path / "cut.mp4").frames
    assert 15 < n < 30
    got = read_clip(tmp_path / "cut.mp4", 0, n, 1, None)
    ref = read_clip(full, 0, n, 1, None)
    assert np.array_equal(got, ref)
    assert np.array_equal(read_clip(tmp_path / "cut.mp4", n - 3, 3, 1, None), ref[n - 3 :])
    with pytest.raises(CvgError) as e:
        read_clip(tmp_path / "cut.mp4", n - 3, 4, 1, None)
    _one_line_error(e, "cut.mp4", f"only {n} frames")


# --------------------------------------------------------------------------- VideoFolder


def test_video_folder_on_synthetic(synth):
    ds = VideoFolder(synth, clip_frames=8, size=16, frame_stride=2, progress=False)
    assert len(ds) == 12 and ds.num_classes == 4 and ds.classes == synthetic_class_names(4)
    assert ds.labels == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert ds.frames_needed == 15
    item = ds[5]
    v, y = item["video"], item["label"]
    assert v.shape == (8, 3, 16, 16) and v.dtype == torch.float32
    assert -1.0 <= v.min() < -0.5 and 0.2 < v.max() <= 1.0  # dark background, bright shape
    assert y.dtype == torch.int64 and int(y) == 1 and y.shape == ()
    # reproducible per (index, seed), and the seed picks the start
    assert torch.equal(ds[(5, 123)]["video"], ds[(5, 123)]["video"])
    assert torch.equal(ds[5]["video"], ds[(5, 5)]["video"])  # seed defaults to the index
    starts = {ds.clip_start(5, s) for s in range(20)}
    assert len(starts) >= 3 and starts <= set(range(20 - 15 + 1))
    # stride honoured: the item is exactly frames start, start+2, ... of read_clip
    for seed in (0, 7):
        s = ds.clip_start(5, seed)
        clip = read_clip(ds.videos[5].path, s, 8, 2, 16)
        expect = torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 127.5 - 1
        assert torch.allclose(ds[(5, seed)]["video"], expect, atol=1e-6)
    dense = read_clip(ds.videos[5].path, ds.clip_start(5, 0), 15, 1, 16)
    assert np.array_equal(dense[::2], read_clip(ds.videos[5].path, ds.clip_start(5, 0), 8, 2, 16))
    assert "12 videos" in repr(ds)


def test_video_folder_flat_layout_is_unconditional(tmp_path):
    for i in range(3):
        write_video(tmp_path / f"drive_{i}.mov", _indexed_frames(12), 10)
    (tmp_path / "notes.txt").write_text("ignored: not a video")
    (tmp_path / ".DS_Store").write_bytes(b"\0\1garbage")
    ds = VideoFolder(tmp_path, clip_frames=4, size=8, progress=False)
    assert (len(ds), ds.num_classes, ds.classes) == (3, 0, [])
    assert ds.labels == [0, 0, 0] and int(ds[0]["label"]) == 0
    assert [Path(v.path).name for v in ds.videos] == ["drive_0.mov", "drive_1.mov", "drive_2.mov"]


def _make_bad_folder(root: Path) -> Path:
    """good/ holds 2 good videos; bad/ holds garbage, a truncated mp4 and a short video."""
    (root / "good").mkdir(parents=True)
    (root / "bad" / "nested").mkdir(parents=True)
    for i in range(2):
        write_video(root / "good" / f"g{i}.mp4", _indexed_frames(16), 10)
    (root / "bad" / "garbage.mp4").write_text("hello, I am text\n" * 40)
    full = write_video(root / "bad" / "full.mp4", _indexed_frames(30), 10)
    data = full.read_bytes()
    full.unlink()
    (root / "bad" / "truncated.mp4").write_bytes(data[: int(len(data) * 0.4)])
    write_video(root / "bad" / "nested" / "short.mp4", _indexed_frames(5), 10)
    # hidden files and folders are never looked at
    (root / "good" / ".partial.mp4").write_text("junk")
    (root / ".cache").mkdir()
    (root / ".cache" / "x.mp4").write_text("junk")
    return root


def test_video_folder_bad_inputs(tmp_path):
    with pytest.raises(CvgError) as e:
        VideoFolder(tmp_path / "nope", 4, 8, progress=False)
    _one_line_error(e, "nope", "does not exist")
    (tmp_path / "file.mp4").write_text("x")
    with pytest.raises(CvgError) as e:
        VideoFolder(tmp_path / "file.mp4", 4, 8, progress=False)
    _one_line_error(e, "file.mp4", "not a folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CvgError) as e:
        VideoFolder(tmp_path / "empty", 4, 8, progress=False)
    _one_line_error(e, "no video files found")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "README.txt").write_text("x")
    with pytest.raises(CvgError) as e:
        VideoFolder(tmp_path / "docs", 4, 8, progress=False)
    _one_line_error(e, "no video files found", "README.txt")

    mixed = tmp_path / "mixed"
    (mixed / "cls").mkdir(parents=True)
    write_video(mixed / "loose.mp4", _indexed_frames(8), 10)
    write_video(mixed / "cls" / "a.mp4", _indexed_frames(8), 10)
    with pytest.raises(CvgError) as e:
        VideoFolder(mixed, 4, 8, progress=False)
    _one_line_error(e, "loose.mp4", "cls/", "class folder")

    root = _make_bad_folder(tmp_path / "ds")
    with pytest.raises(CvgError) as e:
        VideoFolder(root, clip_frames=8, size=8, progress=False)
    _one_line_error(e, "garbage.mp4", "not a readable video", "--skip-bad-videos", "2 other videos")
    (root / "bad" / "garbage.mp4").unlink()
    with pytest.raises(CvgError) as e:
        VideoFolder(root, clip_frames=4, size=8, progress=False)
    _one_line_error(e, "truncated.mp4", "not a readable video", "skip_bad=True")
    (root / "bad" / "truncated.mp4").unlink()
    with pytest.raises(CvgError) as e:
        VideoFolder(root, clip_frames=4, size=8, frame_stride=2, progress=False)
    _one_line_error(e, "short.mp4", "only 5 frames", "needs 7", "--frame-stride",
                    "--skip-bad-videos")
    assert len(VideoFolder(root, clip_frames=5, size=8, progress=False)) == 3  # 5 frames suffice


def test_video_folder_skip_bad(tmp_path):
    root = _make_bad_folder(tmp_path / "ds")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ds = VideoFolder(root, clip_frames=8, size=8, skip_bad=True, progress=False)
    msgs = [str(w.message) for w in rec]
    assert len(msgs) == 1, msgs
    assert "skipping 3 of 5" in msgs[0] and "2 unreadable" in msgs[0] and "1 shorter" in msgs[0]
    assert "garbage.mp4" in msgs[0] and "short.mp4" in msgs[0]
    assert len(ds) == 2 and ds.classes == ["bad", "good"] and ds.labels == [1, 1]
    assert ds[1]["video"].shape == (8, 3, 8, 8)
    for p in (root / "good").glob("*.mp4"):
        p.unlink()
    with pytest.raises(CvgError) as e, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        VideoFolder(root, clip_frames=8, size=8, skip_bad=True, progress=False)
    _one_line_error(e, "no usable videos")


def test_video_folder_read_time_failure(tmp_path):
    """A file that probes fine but is damaged mid-stream: CvgError, or with skip_bad a
    warning (once) and a deterministic fallback to the next video."""
    root = tmp_path / "ds"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        write_video(root / f"{name}.mp4", rng.integers(0, 255, (30, 32, 32, 3), dtype=np.uint8), 10)
    data = bytearray((root / "b.mp4").read_bytes())
    a, b = int(len(data) * 0.3), int(len(data) * 0.7)
    data[a:b] = bytes(b - a)
    (root / "b.mp4").write_bytes(bytes(data))
    strict = VideoFolder(root, clip_frames=30, size=16, progress=False)
    assert len(strict) == 3
    with pytest.raises(CvgError) as e:
        strict[1]
    _one_line_error(e, "b.mp4")
    lenient = VideoFolder(root, clip_frames=30, size=16, skip_bad=True, progress=False)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        item = lenient[(1, 9)]
        again = lenient[(1, 9)]
    assert len(rec) == 1 and "b.mp4" in str(rec[0].message)
    assert torch.equal(item["video"], lenient[(2, 9)]["video"])  # fell back to the next video
    assert torch.equal(item["video"], again["video"])


def test_video_folder_index_cache(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    for c in ("x", "y"):
        (root / c).mkdir(parents=True)
        for i in range(2):
            write_video(root / c / f"{i}.mp4", _indexed_frames(12), 10)
    (root / "y" / "junk.mp4").write_text("garbage")
    cache = tmp_path / "index.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = VideoFolder(root, 4, 8, skip_bad=True, index_cache=cache, progress=False)
    data = json.loads(cache.read_text())
    assert len(data["entries"]) == 5 and "error" in data["entries"][os.path.join("y", "junk.mp4")]

    calls = []
    real_probe = video_io.probe_video

    def counting_probe(path):
        calls.append(Path(path).name)
        return real_probe(path)

    monkeypatch.setattr(video_io, "probe_video", counting_probe)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        second = VideoFolder(root, 6, 8, frame_stride=2, skip_bad=True, index_cache=cache,
                             progress=False)  # other clip params: the probes still apply
    assert calls == [] and second.videos == first.videos
    assert len(rec) == 1 and "junk.mp4" in str(rec[0].message)  # cached errors still reported

    target = root / "x" / "1.mp4"
    write_video(target, _indexed_frames(20), 10)
    st = os.stat(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        third = VideoFolder(root, 4, 8, skip_bad=True, index_cache=cache, progress=False)
    assert calls == ["1.mp4"]
    assert [v.frames for v in third.videos] == [12, 20, 12, 12]
    entries = json.loads(cache.read_text())["entries"]
    assert entries[os.path.join("x", "1.mp4")]["info"]["frames"] == 20


def test_video_folder_in_dataloader_workers(synth):
    import pickle

    ds = VideoFolder(synth, clip_frames=6, size=16, progress=False)
    clone = pickle.loads(pickle.dumps(ds))  # what spawn-started workers receive
    assert clone.videos == ds.videos and torch.equal(clone[(3, 4)]["video"], ds[(3, 4)]["video"])
    keys = [(i, 1000 + i) for i in range(8)]
    loader = ForkSafeDataLoader(ds, batch_size=4, sampler=keys, num_workers=2)
    batches = list(loader)
    assert len(batches) == 2
    video = torch.cat([b["video"] for b in batches])
    labels = torch.cat([b["label"] for b in batches])
    assert video.shape == (8, 6, 3, 16, 16)
    assert labels.tolist() == [ds.labels[i] for i, _ in keys]
    for j, key in enumerate(keys):  # workers read exactly what the main process reads
        assert torch.equal(video[j], ds[key]["video"])


# --------------------------------------------------------------------------- writing


def test_video_writer_streams_and_is_atomic(tmp_path):
    target = tmp_path / "out.mp4"
    frames = _indexed_frames(12, 32, 32)
    with VideoWriter(target, fps=8) as w:
        w.write(frames[:5])
        w.write(frames[5])  # a single (H, W, 3) frame
        w.write(frames[6:])
        assert not target.exists()
        assert all(name.startswith(".") for name in os.listdir(tmp_path))
    assert os.listdir(tmp_path) == ["out.mp4"]
    got = read_clip(target, 0, 12, 1, None)
    assert _frame_ids(got) == list(range(12))

    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(tmp_path / "crash.mp4", fps=8) as w:
            w.write(frames)
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == ["out.mp4"]  # nothing under the final name, no temp left

    # an existing file is replaced only when the new one is complete
    old = target.read_bytes()
    with pytest.raises(RuntimeError):
        with VideoWriter(target, fps=8) as w:
            w.write(frames[:3])
            raise RuntimeError("crash")
    assert target.read_bytes() == old

    with pytest.raises(ValueError):
        VideoWriter(tmp_path / "f.mp4", fps=8).write(frames.astype(np.float32))


@pytest.mark.parametrize("h,w", [(16, 16), (32, 32), (17, 33), (15, 15)])
def test_video_writer_sizes(tmp_path, h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    g = (xx * 160 // w + yy * 80 // h + 10)[..., None]
    # detail in luma, smooth chroma: what 4:2:0 keeps
    img = (g * np.array([1.0, 0.9, 0.7]) + np.array([0, 10, 30])).astype(np.uint8)
    frames = np.stack([np.roll(img, t, axis=1) for t in range(6)])
    path = write_video(tmp_path / "s.mp4", frames, 8)
    info = probe_video(path)
    assert (info.frames, info.width, info.height, info.codec) == (6, w, h, "h264")
    got = read_clip(path, 0, 6, 1, None)
    assert got.shape == (6, h, w, 3)
    assert np.abs(got.astype(int) - frames).mean() < 4


def test_save_frame_grid_png(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    videos = rng.integers(0, 200, (3, 20, 16, 24, 3), dtype=np.uint8)
    path = save_frame_grid_png(tmp_path / "g" / "grid.png", videos, max_frames=16)
    img = np.asarray(Image.open(path))
    s, sep = 4, 2  # 16 px tiles enlarged 4x to reach 64 px
    assert img.shape == (3 * 16 * s + 2 * sep, 16 * 24 * s + 15 * sep, 3)
    y, x = 1 * (16 * s + sep), 2 * (24 * s + sep)  # tile (video 1, frame 2)
    assert np.array_equal(img[y : y + 16 * s : s, x : x + 24 * s : s], videos[1, 2])
    assert (img[16 * s : 16 * s + sep] == 255).all()  # separator row
    assert sorted(os.listdir(tmp_path / "g")) == ["grid.png"]
