"""generate(): long videos from short training, streaming, per-video determinism, errors."""

import numpy as np
import pytest
import torch

from cvg_fast.errors import CvgError
from cvg_fast.models.checkpoint import load_cascade
from cvg_fast.sampling import generate
from cvg_fast.training import LevelTrainer
from cvg_fast.training.distributed import DistInfo

from test_training import RandomClips


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from cvg_fast.config import get_preset

    cfg = get_preset("tiny")
    cfg.train.batch_size, cfg.train.num_workers, cfg.train.steps = 4, 0, 1
    cfg.train.bn_recalibration_batches = 1
    for lv in cfg.levels:
        lv.g_ch = lv.d_ch = 8
    path = tmp_path_factory.mktemp("run")
    ds = RandomClips(cfg.levels[-1].frames, cfg.levels[-1].size, num_classes=2)
    for level in (1, 2):
        LevelTrainer(cfg, level, ds, path, None, DistInfo(), progress=False).run()
    return path


@pytest.mark.parametrize("mult", [1, 4, 16])
def test_longer_than_training(run, mult):
    cascade = load_cascade(run, device="cpu")
    frames = 16 * mult
    v = generate(cascade, num_videos=2, frames=frames, progress=False)
    assert v.shape == (2, frames, 32, 32, 3) and v.dtype == np.uint8


def test_odd_lengths_and_level_choice(run):
    cascade = load_cascade(run, device="cpu")
    assert generate(cascade, frames=1, progress=False).shape == (1, 1, 32, 32, 3)
    assert generate(cascade, frames=37, progress=False).shape == (1, 37, 32, 32, 3)
    assert generate(cascade, frames=9, levels=1, progress=False).shape == (1, 9, 16, 16, 3)


def test_video_is_the_same_alone_or_in_a_batch(run):
    cascade = load_cascade(run, device="cpu")
    batch = generate(cascade, num_videos=3, frames=24, seed=5, progress=False)
    alone = generate(cascade, num_videos=3, frames=24, seed=5, batch_size=1, progress=False)
    # identical up to float rounding of batched convs (a mixing bug moves whole frames)
    diff = np.abs(batch.astype(int) - alone.astype(int))
    assert diff.max() <= 1 and diff.mean() < 1e-3
    assert not np.array_equal(batch[0], batch[1])
    other = generate(cascade, num_videos=1, frames=24, seed=6, progress=False)
    assert not np.array_equal(other[0], batch[0])


def test_streaming_to_files_equals_in_memory(run, tmp_path):
    import av

    cascade = load_cascade(run, device="cpu")
    paths, stats = generate(cascade, num_videos=2, frames=40, out=tmp_path, return_stats=True,
                            progress=False)
    assert [p.name for p in paths] == ["video_0000_class0.mp4", "video_0001_class1.mp4"]
    with av.open(str(paths[0])) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 40 and frames[0].shape == (32, 32, 3)
    assert set(stats.matching_error) == {2}
    assert 0 <= stats.matching_error[2] < 1
    arr = generate(cascade, num_videos=2, frames=40, progress=False)
    luma = np.array([0.299, 0.587, 0.114])  # yuv420p keeps luma at full resolution
    assert np.abs(arr[0] @ luma - np.stack(frames) @ luma).mean() < 4  # codec loss only
    assert np.abs(arr[1] @ luma - np.stack(frames) @ luma).mean() > 10  # and it is video 0


def test_matching_error_measures_drift(run):
    cascade = load_cascade(run, device="cpu")
    _, good = generate(cascade, frames=16, return_stats=True, progress=False)
    with torch.no_grad():  # a broken upscaler that ignores its input entirely
        cascade.generators[1].out_conv.bias.fill_(5.0)
        cascade.generators[1].residual_gain.fill_(1.0)
    _, bad = generate(cascade, frames=16, return_stats=True, progress=False)
    assert bad.matching_error[2] > good.matching_error[2] + 0.05


@pytest.mark.parametrize("frames", [0, -3, 2.5])
def test_bad_frames(run, frames):
    with pytest.raises(CvgError, match="frames must be"):
        generate(run, frames=frames, progress=False)


def test_overlap_moves_the_seams_and_is_checked(run):
    cascade = load_cascade(run, device="cpu")
    plain = generate(cascade, frames=40, progress=False).astype(float)
    cut = generate(cascade, frames=40, overlap=0.5, progress=False).astype(float)
    assert cut.shape == plain.shape
    assert 0 < np.abs(cut - plain).mean() < 40  # same video, other window seams
    with pytest.raises(CvgError, match="overlap"):
        generate(cascade, frames=8, overlap=0.7, progress=False)


def test_bad_classes(run):
    with pytest.raises(CvgError, match="out of range"):
        generate(run, classes=7, progress=False)
    with pytest.raises(CvgError, match="one per video"):
        generate(run, num_videos=2, classes=[0, 1, 1], progress=False)


def test_missing_run_and_levels(tmp_path, run):
    with pytest.raises(CvgError, match="does not exist"):
        load_cascade(tmp_path / "nope")
    with pytest.raises(CvgError, match="no trained level 1"):
        load_cascade(tmp_path)
    with pytest.raises(CvgError, match="level 3 is missing"):
        load_cascade(run, levels=3)


def test_iter_videos_streams_the_videos_generate_makes(run):
    from cvg_fast.sampling import iter_videos

    cascade = load_cascade(run, device="cpu")
    whole = generate(cascade, num_videos=5, frames=20, seed=3, batch_size=2, progress=False)
    batches = list(iter_videos(cascade, 5, 20, seed=3, batch_size=2))
    assert [len(a) for a, _ in batches] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([a for a, _ in batches]), whole)
    assert sum((lab for _, lab in batches), []) == [0, 1, 0, 1, 0]  # video i: class i mod 2
    # an offset range: videos 3 and 4 are the same videos (up to batched-conv rounding)
    (tail, labels), = list(iter_videos(cascade, 2, 20, seed=3, batch_size=8, first=3))
    assert np.abs(tail.astype(int) - whole[3:].astype(int)).max() <= 1
    assert labels == [1, 0]


def test_bilinear_source_upsamples_level1(run):
    from cvg_fast.metrics.sources import bilinear_source
    from cvg_fast.ops import upsample_to

    cascade = load_cascade(run, device="cpu")
    (arr, labels), = list(bilinear_source(cascade, 1, seed=2)(3, 16))
    assert arr.shape == (3, 16, 32, 32, 3) and labels == [0, 1, 0]
    low = generate(cascade, num_videos=3, frames=8, levels=1, seed=2, batch_size=16,
                   progress=False)
    x = torch.from_numpy(low).permute(0, 1, 4, 2, 3).float()
    want = upsample_to(x, 16, 32).round().clamp(0, 255).to(torch.uint8).permute(0, 1, 3, 4, 2)
    np.testing.assert_array_equal(arr, want.numpy())
