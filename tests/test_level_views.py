"""Level-aware decoding: the views a level trains on, decoded from only the frames they
need, equal the full pyramid's frames bit for bit."""

import numpy as np
import pytest
import torch

from cvg_fast.config import get_preset
from cvg_fast.data import VideoFolder, read_clip, read_frames, write_video
from cvg_fast.data.level_views import LevelViews
from cvg_fast.ops.pyramid import pyramid

# bottom-up (frames, size): tiny, kinetics600-like and a 3-level bdd100k-like cascade, small
SHAPES = {
    "tiny": ((8, 16), (16, 32)),
    "k600": ((12, 8), (48, 32)),
    "bdd3": ((6, 8), (12, 16), (24, 32)),
}
WINDOWS = {"tiny": {2: 4}, "k600": {2: 6}, "bdd3": {2: 3, 3: 12}}


def _cases():
    for name, shapes in SHAPES.items():
        yield name, 1, 0
        for level, w in WINDOWS[name].items():
            yield name, level, w


@pytest.mark.parametrize("name,level,window", list(_cases()))
def test_views_equal_the_full_pyramid_frame_by_frame(name, level, window):
    shapes = SHAPES[name]
    t, s = shapes[-1]
    video = torch.rand(1, t, 3, s, s) * 2 - 1
    full = pyramid(video, list(shapes))
    lv = LevelViews(shapes, level, window)
    for start in range(lv.num_starts):
        idx = lv.top_indices(start)
        got = lv.views(video[0, idx])
        if level == 1:
            assert torch.equal(got["high"], full[0][0])
            assert "low" not in got
            continue
        f = shapes[level - 1][0] // shapes[level - 2][0]
        assert torch.equal(got["high"], full[level - 1][0, start * f:(start + window) * f])
        assert torch.equal(got["low"], full[level - 2][0, start:start + window])


def test_level1_reads_every_kth_frame_and_windows_only_their_frames():
    lv1 = LevelViews(SHAPES["k600"], 1)
    assert lv1.top_indices() == list(range(0, 48, 4))
    lv2 = LevelViews(SHAPES["k600"], 2, 6)
    assert lv2.num_starts == 7
    assert lv2.top_indices(3) == list(range(12, 36))  # 6 input frames x 4 = 24 frames
    bdd = LevelViews(SHAPES["bdd3"], 2, 3)  # level 2 of 3: every 2nd top frame of its window
    assert bdd.top_indices(1) == [4, 6, 8, 10, 12, 14]


def test_window_start_is_deterministic_and_covers_every_start():
    lv = LevelViews(SHAPES["k600"], 2, 6)
    starts = [lv.window_start(seed) for seed in range(400)]
    assert starts == [lv.window_start(seed) for seed in range(400)]
    assert set(starts) == set(range(lv.num_starts))


def test_for_level_reads_the_config_and_bad_arguments_raise():
    cfg = get_preset("tiny")
    lv = LevelViews.for_level(cfg, 2)
    assert lv.shapes == ((8, 16), (16, 32)) and lv.window == cfg.window(2)
    assert "level 2" in lv.describe() and "level 1" in LevelViews.for_level(cfg, 1).describe()
    with pytest.raises(ValueError, match="level 3"):
        LevelViews(SHAPES["tiny"], 3)
    with pytest.raises(ValueError, match="window"):
        LevelViews(SHAPES["tiny"], 2, 9)
    with pytest.raises(ValueError, match="strictly increasing"):
        read_frames("x.mp4", [3, 3])


def _moving(t, h, w, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h + t, w, 3), dtype=np.uint8)
    return np.stack([base[i:i + h] for i in range(t)])


def test_read_frames_equals_read_clip(tmp_path):
    path = tmp_path / "v.mp4"
    write_video(path, _moving(40, 36, 48), fps=10)
    clip = read_clip(path, 5, 8, 3, 16)
    assert np.array_equal(read_frames(path, [5 + 3 * k for k in range(8)], 16), clip)
    assert np.array_equal(read_frames(path, [8, 14], 16), clip[[1, 3]])


@pytest.mark.parametrize("level", [1, 2])
def test_video_folder_items_equal_the_full_pyramid(tmp_path, level):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(2):
            write_video(tmp_path / c / f"{i}.mp4", _moving(40, 40, 52, seed=i), fps=10)
    cfg = get_preset("tiny")
    shapes = [(lv.frames, lv.size) for lv in cfg.levels]
    top = cfg.levels[-1]
    full = VideoFolder(tmp_path, top.frames, top.size, frame_stride=2, progress=False)
    views = LevelViews.for_level(cfg, level)
    lean = VideoFolder(tmp_path, top.frames, top.size, frame_stride=2, progress=False,
                       views=views)
    for index, seed in [(0, 11), (3, 5), (2, 987)]:
        whole = full[(index, seed)]
        item = lean[(index, seed)]
        assert torch.equal(item["label"], whole["label"])
        ref = pyramid(whole["video"][None], shapes)
        if level == 1:
            assert torch.equal(item["high"], ref[0][0])
            continue
        s, w = views.window_start(seed), views.window
        f = cfg.t_factor(2)
        assert torch.equal(item["high"], ref[1][0, s * f:(s + w) * f])
        assert torch.equal(item["low"], ref[0][0, s:s + w])


def test_views_must_match_the_folder_clip(tmp_path):
    write_video(tmp_path / "v.mp4", _moving(20, 32, 32), fps=10)
    with pytest.raises(ValueError, match="views"):
        VideoFolder(tmp_path, 8, 32, progress=False, views=LevelViews(SHAPES["tiny"], 1))
