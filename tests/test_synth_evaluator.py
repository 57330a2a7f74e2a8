"""The synthetic-set evaluator, its degradations and the synthetic dataset's spec.

The evaluator is trained once per module with the "reduced" budget (~30 s on two
cores). Real clips come from two datasets written by `write_synthetic_dataset` with
different seeds (real .mp4 files, read back with `read_clip`): A is the reference,
B the held-out real set. The key test: FVD-synth(A, degrade(B, s)) rises strictly
with the strength s of each degradation, at 16 frames and with 32-frame clips scored
as two windows.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from cvg_fast.data.synthetic import (
    SPEC_FILE,
    read_synthetic_spec,
    render_synthetic_clip,
    render_synthetic_video,
    write_synthetic_dataset,
)
from cvg_fast.data.video_io import read_clip
from cvg_fast.errors import CvgError
from cvg_fast.metrics import degrade as dg
from cvg_fast.metrics import synth_evaluator as se
from cvg_fast.metrics.frechet import frechet_distance

VIDEOS_PER_CLASS = 64  # 4 classes -> 256 clips per set, as in the demo
FRAMES = 32
STRENGTHS = {
    "blur": (0.0, 0.5, 1.0, 2.0),
    "noise": (0.0, 4.0, 8.0, 16.0),
    "freeze": (0.0, 0.25, 0.5, 0.75),
    "shuffle": (0.0, 0.25, 0.5, 1.0),
}
# a tiny budget for plumbing: determinism and the cache, not quality
PLUMBING = dict(se.BUDGETS["tiny"], steps=12, batch_size=16)
not_accurate = pytest.mark.filterwarnings("ignore:synthetic-set evaluator reached only")


def _read_all(root) -> np.ndarray:
    """Every video of a dataset, sorted by class then name: uint8 (N, FRAMES, 32, 32, 3)."""
    files = sorted(root.glob("*/*.mp4"))
    return np.stack([read_clip(f, 0, FRAMES, 1, None) for f in files])


@pytest.fixture(scope="module")
def real_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_eval")
    kw = dict(num_classes=4, videos_per_class=VIDEOS_PER_CLASS, frames=FRAMES, size=32, fps=8,
              progress=False)
    a = write_synthetic_dataset(root / "a", seed=0, **kw)
    b = write_synthetic_dataset(root / "b", seed=1, **kw)
    return a, _read_all(a), _read_all(b)


@pytest.fixture(scope="module")
def evaluator(real_sets):
    net, report = se.train_synth_evaluator(read_synthetic_spec(real_sets[0]), seed=0,
                                           progress=False, budget="reduced")
    print("reduced evaluator:", json.dumps({k: v for k, v in report.items() if k != "budget"}))
    return net


@pytest.fixture(scope="module")
def reference(evaluator, real_sets):
    """Feature statistics of set A: {frames: (mu, cov)} for 16- and 32-frame clips."""
    _, a, _ = real_sets
    return {t: _stats(evaluator, a[:, :t]) for t in (16, 32)}


@pytest.fixture(scope="module")
def floor(evaluator, reference, real_sets):
    """FVD-synth(A, B) of two real sets: {frames: value} for 16 and 32 frames."""
    _, _, b = real_sets
    return {t: _fvd(evaluator, reference, b[:, :t]) for t in (16, 32)}


def _stats(net, videos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    feats, _ = net.score(videos)
    f = feats.double().numpy()
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _fvd(net, ref, videos: np.ndarray) -> float:
    mu, cov = _stats(net, videos)
    return frechet_distance(*ref[videos.shape[1]], mu, cov)


# --------------------------------------------------------------------------- evaluator


def test_heldout_class_accuracy(evaluator, real_sets):
    assert evaluator.report["class_accuracy"] >= 0.95
    _, a, _ = real_sets
    _, probs = evaluator.score(a[:, :16])
    labels = np.repeat(np.arange(4), VIDEOS_PER_CLASS)
    assert (probs.argmax(1).numpy() == labels).mean() >= 0.95  # real encoded videos too
    assert probs.shape == (len(a), 4) and torch.allclose(probs.sum(1), torch.ones(len(a)))
    assert evaluator.detector_hash and len(evaluator.detector_hash) == 16


def test_features_any_frame_size(evaluator):
    video = render_synthetic_video(2, 5, 16, 48)[None]  # 48x48: resized to the net's 32x32
    feats, probs = evaluator.score(video)
    assert feats.shape == (1, se.FEATURE_DIM) and probs.shape == (1, 4)
    assert int(probs.argmax()) == 2


@not_accurate
def test_same_seed_same_weights(real_sets):
    spec = read_synthetic_spec(real_sets[0])
    nets = [se.train_synth_evaluator(spec, seed=s, progress=False, budget=PLUMBING)[0]
            for s in (0, 0, 1)]
    a, b, c = (n.state_dict() for n in nets)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert nets[0].detector_hash == nets[1].detector_hash != nets[2].detector_hash


def test_fvd_real_floor_far_below_noise_and_still_video(evaluator, reference, real_sets, floor):
    _, _, b = real_sets
    clips = b[:, :16]
    noise = np.random.default_rng(0).integers(0, 256, size=clips.shape, dtype=np.uint8)
    still = np.repeat(clips[:, :1], 16, axis=1)
    assert 10 * floor[16] < _fvd(evaluator, reference, noise)
    assert 10 * floor[16] < _fvd(evaluator, reference, still)


@pytest.mark.parametrize("name", list(STRENGTHS))
def test_fvd_grows_with_degradation_strength(evaluator, reference, real_sets, floor, name):
    _, _, b = real_sets
    for frames in (16, 32):  # 32: two 16-frame windows, averaged
        clips = b[:, :frames]
        fvds = [floor[frames]] + [_fvd(evaluator, reference, dg.degrade(clips, name, s, seed=1))
                                  for s in STRENGTHS[name][1:]]  # strength 0: the identity
        print(f"{name} {frames}f: " + ", ".join(f"{s:g}: {v:.2f}"
                                                for s, v in zip(STRENGTHS[name], fvds)))
        assert fvds[1] > 3 * fvds[0], f"{name} {STRENGTHS[name][1]} barely above the floor"
        for lo, hi in zip(fvds[1:], fvds[2:]):
            assert hi > 1.05 * lo, f"{name} {frames}f: FVD not increasing: {fvds}"


# --------------------------------------------------------------------------- cache


@not_accurate
def test_cache_hit_loads_and_other_seed_misses(tmp_path, monkeypatch):
    data = write_synthetic_dataset(tmp_path / "d", num_classes=2, videos_per_class=1, frames=16,
                                   size=32, progress=False)
    first = se.load_synth_evaluator(data, seed=0, progress=False, budget=PLUMBING)
    path = se.evaluator_cache_path(data, seed=0, budget=PLUMBING)
    assert first.trained_now and path.is_file() and path.parent == data / ".cvg_cache"

    def no_training(*args, **kwargs):
        raise AssertionError("the cached evaluator should have been loaded")

    monkeypatch.setattr(se, "train_synth_evaluator", no_training)
    again = se.load_synth_evaluator(data, seed=0, progress=False, budget=PLUMBING)
    assert not again.trained_now and again.detector_hash == first.detector_hash
    assert not again.training and again.report["steps"] == PLUMBING["steps"]
    video = render_synthetic_video(1, 9, 16, 32)[None]
    assert torch.equal(first.score(video)[0], again.score(video)[0])
    with pytest.raises(AssertionError, match="cached evaluator"):
        se.load_synth_evaluator(data, seed=1, progress=False, budget=PLUMBING)
    assert se.evaluator_cache_path(data, seed=1, budget=PLUMBING) != path


# --------------------------------------------------------------------------- spec


def test_spec_manifest_and_inferred(tmp_path):
    data = write_synthetic_dataset(tmp_path / "d", num_classes=3, videos_per_class=2, frames=12,
                                   size=16, fps=6, seed=5, progress=False)
    spec = read_synthetic_spec(data)
    assert spec["inferred"] is False and spec["format"] == "cvg_fast.synthetic"
    assert {k: spec[k] for k in ("num_classes", "videos_per_class", "frames", "size", "fps",
                                 "seed", "codec")} == dict(num_classes=3, videos_per_class=2,
                                                           frames=12, size=16, fps=6, seed=5,
                                                           codec="libx264")
    os.remove(data / SPEC_FILE)  # a dataset from before the manifest
    old = read_synthetic_spec(data)
    assert old["inferred"] is True and old["seed"] == 0
    assert (old["num_classes"], old["videos_per_class"], old["frames"], old["size"],
            old["codec"]) == (3, 2, 12, 16, "libx264")
    assert old["fps"] == pytest.approx(6)


def test_spec_rejects_other_folders(tmp_path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "a.mp4").write_bytes(b"")
    for folder in (tmp_path, tmp_path / "missing"):
        with pytest.raises(CvgError) as err:
            read_synthetic_spec(folder)
        msg = str(err.value)
        assert "\n" not in msg and str(folder) in msg and "cvg data synth" in msg


def test_render_clip_centres_match_the_pixels():
    video, centres = render_synthetic_clip(0, 3, 12, 32, seed=2)  # red circle
    assert np.array_equal(video, render_synthetic_video(0, 3, 12, 32, seed=2))
    assert centres.shape == (12, 2)
    v = video.astype(float)
    red = (v[..., 0] - v[..., 1:].max(-1)) / 190.0  # ~1 inside the circle, ~0 outside
    w = np.clip(red, 0, 1)
    ys, xs = np.mgrid[0:32, 0:32] + 0.5
    found = np.stack([(w * xs).sum((1, 2)) / w.sum((1, 2)),
                      (w * ys).sum((1, 2)) / w.sum((1, 2))], axis=1)
    assert np.abs(found - centres).max() < 0.5


# --------------------------------------------------------------------------- degrade


def _videos() -> np.ndarray:
    return np.stack([render_synthetic_video(k, 0, 16, 32) for k in range(3)])


@pytest.mark.parametrize("name", list(dg.DEGRADATIONS))
def test_degradation_identity_determinism_monotone(name):
    v = _videos()
    same = dg.degrade(v, name, 0.0, seed=0)
    assert np.array_equal(same, v) and same is not v
    strengths = STRENGTHS[name][1:]
    runs = [dg.degrade(v, name, s, seed=3) for s in strengths]
    assert all(r.shape == v.shape and r.dtype == np.uint8 for r in runs)
    assert np.array_equal(runs[0], dg.degrade(v, name, strengths[0], seed=3))
    err = [np.abs(r.astype(int) - v).mean() for r in runs]
    assert 0 < err[0] < err[1] < err[2], err
    if name != "blur":  # the random ones depend on the seed
        assert not np.array_equal(runs[1], dg.degrade(v, name, strengths[1], seed=4))


def test_frame_indices_nest_and_permute():
    rng = lambda: np.random.default_rng(7)  # noqa: E731
    frozen = [dg.freeze_frame_index(16, f, rng()) for f in (0.25, 0.5, 1.0)]
    stalls = [set(np.nonzero(idx != np.arange(16))[0]) for idx in frozen]
    assert stalls[0] < stalls[1] < stalls[2] and len(stalls[0]) == 4
    assert np.array_equal(frozen[2], np.zeros(16, int))  # everything stalls on frame 0
    for s, moved in ((0.25, 4), (1.0, 16)):
        idx = dg.shuffle_frame_index(16, s, rng())
        assert sorted(idx) == list(range(16)) and (idx != np.arange(16)).sum() == moved
    assert np.array_equal(dg.shuffle_frame_index(16, 0.05, rng()), np.arange(16))  # 1 frame


# --------------------------------------------------------------- cvg eval, end to end
def test_evaluate_run_on_a_trained_cascade(evaluator, real_sets, tiny_cfg, tmp_path):
    """A (barely) trained run, scored like `cvg eval`: the table, the protocol, the jsonl."""
    from cvg_fast.metrics.run_eval import evaluate_run
    from cvg_fast.training import train_level

    data = real_sets[0]
    tiny_cfg.train.steps = 1
    run = tmp_path / "run"
    for level in (1, 2):
        train_level(tiny_cfg, level, data, run, device="cpu", progress=False)
    names = ["fvdsynth_16f", "fvdsynth_32f", "issynth", "accsynth"]
    results, report = evaluate_run(run, data, metrics=names, num_videos=64, progress=False,
                                   detectors={"synth": evaluator})
    assert list(results) == names
    fvd16 = results["fvdsynth_16f"]
    # an untrained cascade is far from the data: well above the real-vs-real floor (~1-3)
    assert fvd16.value > 20 and results["fvdsynth_32f"].value > 20
    assert fvd16.protocol["num_real"] == 64 and fvd16.protocol["num_fake"] == 64
    assert fvd16.protocol["detector_hash"] == evaluator.detector_hash
    assert 1.0 <= results["issynth"].value <= 4.0 and 0.0 <= results["accsynth"].value <= 1.0
    assert "fvdsynth_32f" in report and evaluator.detector_hash in report
    rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    assert [r["metric"] for r in rows] == names
    assert rows[0]["value"] == pytest.approx(fvd16.value)
    # the real statistics were cached: a second evaluation reuses them
    again, _ = evaluate_run(run, data, metrics=names[:1], num_videos=64, progress=False,
                            detectors={"synth": evaluator}, log=False)
    assert again["fvdsynth_16f"].protocol["real_stats_cached"]
    assert again["fvdsynth_16f"].value == pytest.approx(fvd16.value, rel=1e-9)
