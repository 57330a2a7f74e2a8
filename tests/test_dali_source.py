"""DALI clip source: frames equal PyAV's, labels/shapes, sharding, PyAV fallback, errors.

DALI's CPU reader decodes VP8/VP9/MJPEG only, so the files here are VP9 and MJPEG (and one
H.264 file for the fallback). DALI converts YUV->RGB with bilinear chroma upsampling, PyAV
(swscale) with nearest: frames are compared on the MEAN absolute difference (<= 4 of 255
levels) with a loose max (<= 96) for chroma edges.
"""

import dataclasses
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("nvidia.dali")

from cvg_fast.data import VideoFolder  # noqa: E402
from cvg_fast.data import dali_source as ds  # noqa: E402
from cvg_fast.data.video_io import read_clip, write_video  # noqa: E402
from cvg_fast.errors import CvgError  # noqa: E402
from cvg_fast.training.data import SourceSchedule, make_train_loader  # noqa: E402

FRAMES, H, W = 24, 32, 48
MEAN_TOL, MAX_TOL = 4.0, 96.0  # levels of 255


def _moving(k: int) -> np.ndarray:
    """uint8 (FRAMES, H, W, 3): a smooth gradient and a bright square moving 3 px/frame."""
    t = np.arange(FRAMES)[:, None, None]
    y, x = np.arange(H)[None, :, None], np.arange(W)[None, None, :]
    r, g, b = np.broadcast_arrays(40 + 3 * x + 2 * t, 60 + 4 * y + 20 * k, 90 + 2 * (x + y) - t)
    clip = np.stack([r, g, b], -1).astype(np.float64)
    for i in range(FRAMES):
        x0, y0 = (3 * i + 5 * k) % (W - 10), (2 * i + 3 * k) % (H - 10)
        clip[i, y0:y0 + 10, x0:x0 + 10] = (230, 220 - 10 * k, 60)
    return np.clip(clip, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """7 files in class folders a/ (VP9) and b/ (MJPEG), and a folder `mixed` whose class b/
    holds one H.264 file (the codec DALI's CPU reader cannot decode)."""
    root = tmp_path_factory.mktemp("dali")
    out = {"data": root / "data", "mixed": root / "mixed", "vp9": [], "mjpeg": []}
    for k in range(7):
        codec, ext, cls = ("libvpx-vp9", ".webm", "a") if k < 4 else ("mjpeg", ".avi", "b")
        path = write_video(out["data"] / cls / f"v{k}{ext}", _moving(k), 8, codec)
        out["vp9" if k < 4 else "mjpeg"].append(str(path))
    for k in range(2):
        write_video(out["mixed"] / "a" / f"v{k}.webm", _moving(k), 8, "libvpx-vp9")
    write_video(out["mixed"] / "b" / "h.mp4", _moving(5), 8, "libx264")
    return out


def _levels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).abs() * 127.5  # [-1, 1] floats -> levels of 255


def _pyav(path: str, start: int, frames: int, stride: int, size: int) -> torch.Tensor:
    clip = read_clip(path, start, frames, stride, size)
    return torch.from_numpy(clip.transpose(0, 3, 1, 2).copy()).float() / 127.5 - 1.0


@pytest.mark.parametrize("codec,size", [("vp9", 16), ("mjpeg", 18)])
def test_frames_equal_pyav_read_clip(files, codec, size):
    path, t, stride = files[codec][0], 4, 2
    span = (t - 1) * stride + 1
    loader = ds.DaliClipLoader([path], [3], t, stride, size, 1, "cpu", random_shuffle=False,
                               frames=[FRAMES])
    assert loader.epoch_size == (FRAMES - span) // span + 1 == 3 and loader.mismatch == ""
    it = iter(loader)
    for k in range(loader.epoch_size):
        clip = next(it)["video"][0]
        diff = _levels(clip, _pyav(path, k * span, t, stride, size))
        assert diff.mean() <= MEAN_TOL and diff.max() <= MAX_TOL, (k, diff.mean(), diff.max())
        # the frames are the right ones: one frame later is clearly further away
        later = _levels(clip, _pyav(path, k * span + 1, t, stride, size)).mean()
        assert later > 2 * diff.mean() and later > MEAN_TOL, (k, later, diff.mean())


def test_batches_format_and_dataset_labels(files):
    data = VideoFolder(files["data"], clip_frames=4, size=16, frame_stride=2, progress=False)
    labels = [10 + i for i in range(len(data))]  # not DALI's folder indexing
    loader = ds.DaliClipLoader([v.path for v in data.videos], labels, 4, 2, 16, 3, "cpu",
                               random_shuffle=False, frames=[v.frames for v in data.videos])
    assert loader.epoch_size == 3 * len(data) and loader.mismatch == ""
    it = iter(loader)
    got = []
    for _ in range(loader.epoch_size // 3):
        batch = next(it)
        assert set(batch) == {"video", "label"}
        assert batch["video"].shape == (3, 4, 3, 16, 16) and batch["video"].dtype == torch.float32
        assert batch["video"].device.type == "cpu"
        assert -1.0 <= batch["video"].min() < -0.5 and 0.5 < batch["video"].max() <= 1.0
        assert batch["label"].shape == (3,) and batch["label"].dtype == torch.int64
        got += batch["label"].tolist()
    assert got == [lab for lab in labels for _ in range(3)]  # file order, 3 clips per file


def test_shuffle_is_seeded_and_a_resumed_run_reads_a_new_order(files):
    paths = files["vp9"] + files["mjpeg"]

    def order(seed, start_step):
        loader = ds.DaliClipLoader(paths, list(range(len(paths))), 4, 2, 16, 3, "cpu",
                                   seed=seed, start_step=start_step)
        it = iter(loader)
        return [next(it)["label"].tolist() for _ in range(7)]  # one epoch: 21 clips

    first = order(0, 0)
    assert first == order(0, 0)
    assert sorted(sum(first, [])) != sum(first, [])  # shuffled, not file order
    assert order(0, 500) != first and order(1, 0) != first


@pytest.mark.parametrize("world", [2, 3])
def test_shards_are_disjoint_and_complete(files, world):
    paths = files["vp9"] + files["mjpeg"]
    n = len(paths)
    seen = []
    for rank in range(world):
        # 8 frames x stride 2 = 15-frame span: one clip per 24-frame file, label = file index
        loader = ds.DaliClipLoader(paths, list(range(n)), 8, 2, 16, 1, "cpu", shard_id=rank,
                                   num_shards=world, random_shuffle=False)
        assert loader.epoch_size == n
        shard_size = (rank + 1) * n // world - rank * n // world
        it = iter(loader)
        seen.append({int(next(it)["label"][0]) for _ in range(shard_size)})
        assert len(seen[-1]) == shard_size
    assert set().union(*seen) == set(range(n))
    assert sum(len(s) for s in seen) == n  # disjoint


def test_h264_falls_back_to_pyav_with_one_warning(files):
    data = VideoFolder(files["mixed"], clip_frames=4, size=16, frame_stride=2, progress=False)
    with pytest.warns(UserWarning) as record:
        loader, desc = make_train_loader("dali", data, 2, 0, 1, 7, 0, 0, "cpu")
    msgs = [str(w.message) for w in record if "DALI" in str(w.message)]
    assert len(msgs) == 1 and "cannot decode 1 of 3 files (h264: 1; e.g. h.mp4)" in msgs[0]
    assert "PyAV reads them" in msgs[0] and "\n" not in msgs[0]
    assert desc.startswith("data: DALI cpu reader, 2 files")
    assert "PyAV fallback for 1 files (h264: 1)" in desc
    schedule = SourceSchedule(7, 2 / 3)
    it = iter(loader)
    steps = 12
    expected = [0 if schedule.uses_dali(s) else 1 for s in range(steps)]
    assert 0 in expected and 1 in expected  # both sources are exercised
    for s in range(steps):
        batch = next(it)  # class a = the VP9 files (DALI), class b = the H.264 file (PyAV)
        assert batch["label"].tolist() == [expected[s]] * 2, s
        assert batch["video"].shape == (2, 4, 3, 16, 16) and batch["video"].dtype == torch.float32


def test_source_schedule_counts_and_share():
    schedule = SourceSchedule(3, 0.75)
    brute = np.cumsum([schedule.uses_dali(s) for s in range(2 * SourceSchedule.BLOCK + 50)])
    for step in (0, 1, 17, SourceSchedule.BLOCK, SourceSchedule.BLOCK + 9, len(brute)):
        assert schedule.dali_steps_before(step) == (brute[step - 1] if step else 0)
    assert abs(brute[-1] / len(brute) - 0.75) < 0.02
    assert [schedule.uses_dali(s) for s in range(64)] == \
        [SourceSchedule(3, 0.75).uses_dali(s) for s in range(64)]


def test_dali_only_is_a_one_line_error(files):
    data = VideoFolder(files["mixed"], clip_frames=4, size=16, frame_stride=2, progress=False)
    with pytest.raises(CvgError, match=r"--dali-only: DALI's cpu reader cannot decode 1 of 3 "
                                       r"files \(h264: 1;") as err:
        make_train_loader("dali", data, 2, 0, 1, 0, 0, 0, "cpu", dali_only=True)
    assert "\n" not in str(err.value) and "drop --dali-only" in str(err.value)


def test_reader_count_mismatch_is_reported(files):
    data = VideoFolder(files["data"], clip_frames=4, size=16, frame_stride=2, progress=False)
    # pretend the index saw 48 frames per file: DALI then holds fewer clips than predicted
    data.videos = [dataclasses.replace(v, frames=2 * FRAMES) for v in data.videos]
    with pytest.warns(UserWarning, match=r"holds 21 clips where the 7 files predict 42"):
        make_train_loader("dali", data, 2, 0, 1, 0, 0, 0, "cpu")


def test_backend_choice_and_errors(files, monkeypatch):
    data = VideoFolder(files["data"], clip_frames=4, size=16, frame_stride=2, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto on a CPU: PyAV, nothing to warn about
        loader, desc = make_train_loader("auto", data, 2, 0, 1, 0, 0, 0, "cpu")
    assert isinstance(loader, torch.utils.data.DataLoader)
    assert desc == "data: PyAV, 7 files, 0 workers (auto: DALI only on cuda)"
    loader, desc = make_train_loader("dali", data, 2, 0, 1, 0, 0, 0, "cpu")
    assert isinstance(loader, ds.DaliClipLoader) and desc.endswith("7 files, 21 clips/epoch")
    with pytest.raises(CvgError, match=r"--data-backend 'nvdec' is not a data backend"):
        make_train_loader("nvdec", data, 2, 0, 1, 0, 0, 0, "cpu")
    with pytest.raises(CvgError, match="--dali-only needs DALI"):
        make_train_loader("pyav", data, 2, 0, 1, 0, 0, 0, "cpu", dali_only=True)
    monkeypatch.setattr(ds, "_available", False)
    with pytest.raises(CvgError, match=r'not installed: pip install -e "\.\[dali\]"'):
        make_train_loader("dali", data, 2, 0, 1, 0, 0, 0, "cpu")


def test_codec_split_per_device():
    infos = [type("V", (), {"codec": c})() for c in ("vp9", "h264", "mjpeg", "libdav1d", "mpeg4",
                                                     "hevc", "vp8", "prores")]
    assert ds.split_by_decoder(infos, "cpu") == ([0, 2, 6], [1, 3, 4, 5, 7])
    assert ds.split_by_decoder(infos, "cuda") == ([0, 1, 2, 3, 4, 5, 6], [7])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_gpu_pipeline_defines_and_fails_cleanly_without_gpu(files):
    pipe = ds.build_pipeline(files["vp9"], [0] * 4, 4, 2, 7, 16, torch.device("cuda", 0),
                             batch_size=2, num_threads=1, shard_id=0, num_shards=1,
                             random_shuffle=True, seed=1)
    assert pipe.max_batch_size == 2  # the GPU graph is defined; only building needs the GPU
    with pytest.raises(CvgError, match="DALI's GPU reader needs a CUDA device") as err:
        ds.DaliClipLoader(files["vp9"], [0] * 4, 4, 2, 16, 2, "cuda")
    assert "\n" not in str(err.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (NVDEC)")
def test_gpu_reader_matches_pyav(files, tmp_path):
    h264 = str(write_video(tmp_path / "h.mp4", _moving(2), 8, "libx264"))
    for path in (files["vp9"][0], h264):
        loader = ds.DaliClipLoader([path], [1], 4, 2, 16, 1, "cuda", random_shuffle=False,
                                   frames=[FRAMES])
        batch = next(iter(loader))
        assert batch["video"].is_cuda and batch["label"].tolist() == [1]
        diff = _levels(batch["video"][0].cpu(), _pyav(path, 0, 4, 2, 16))
        assert diff.mean() <= MEAN_TOL and diff.max() <= MAX_TOL, (path, diff.mean(), diff.max())
