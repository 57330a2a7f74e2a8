"""Fréchet distance, IS, streaming statistics, metric names, the real-statistics cache,
the sources the metrics score, and `cvg eval`'s one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cvg_fast.errors import CvgError
from cvg_fast.metrics import FeatureStats, frechet_distance, inception_score, parse_metric
from cvg_fast.metrics.feature_net import VideoFeatureNet

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ Fréchet distance
def _scipy_fd(mu1, s1, mu2, s2):
    from scipy import linalg

    covmean = linalg.sqrtm(s1 @ s2).real
    d = mu1 - mu2
    return d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def _random_cov(rng, d, rank=None):
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / (rank or d)


def test_frechet_equals_scipy_on_random_statistics():
    rng = np.random.default_rng(0)
    for d in (1, 5, 64):
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
        s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_scipy_fd(mu1, s1, mu2, s2),
                                                                   rel=1e-6, abs=1e-8)


def test_frechet_closed_form_with_singular_covariances():
    # diagonal covariances: FD = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2, zeros included
    a = np.array([0.0, 0.0, 1.0, 4.0, 2.0])
    b = np.array([0.0, 3.0, 0.0, 1.0, 2.0])
    mu1, mu2 = np.arange(5.0), np.arange(5.0)[::-1]
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(want, abs=1e-4)


def test_frechet_rank_deficient_random_covariance_is_finite_and_matches_scipy():
    rng = np.random.default_rng(1)
    d = 32
    s1, s2 = _random_cov(rng, d, rank=8), _random_cov(rng, d, rank=8)  # both singular
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    got = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(got)
    assert got == pytest.approx(_scipy_fd(mu1, s1, mu2, s2), rel=1e-4, abs=1e-4)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-3)


def test_frechet_of_identical_gaussians_is_zero_and_shape_errors():
    rng = np.random.default_rng(2)
    s = _random_cov(rng, 16)
    mu = rng.standard_normal(16)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        frechet_distance(mu, s, mu[:8], s[:8, :8])


def test_feature_stats_stream_equals_numpy():
    rng = np.random.default_rng(3)
    feats = rng.standard_normal((300, 12)) * 3 + 1
    st = FeatureStats(12)
    for chunk in np.array_split(feats, 7):
        st.update(torch.from_numpy(chunk).float() if len(chunk) % 2 else chunk)
    mu, cov = st.mean_cov()
    f32 = np.concatenate([c.astype(np.float32).astype(np.float64) if len(c) % 2 else c
                          for c in np.array_split(feats, 7)])
    np.testing.assert_allclose(mu, f32.mean(0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(cov, np.cov(f32, rowvar=False), rtol=1e-9, atol=1e-9)
    back = FeatureStats.from_state(st.state())
    np.testing.assert_array_equal(back.mean_cov()[1], cov)
    with pytest.raises(ValueError):
        st.update(np.zeros((2, 5)))


def test_inception_score_bounds():
    k = 7
    uniform = np.full((100, k), 1.0 / k)
    assert inception_score(uniform, splits=5)[0] == pytest.approx(1.0, abs=1e-9)
    confident = np.eye(k)[np.arange(140) % k]  # each class equally often, probability 1
    mean, std = inception_score(confident, splits=10)
    assert mean == pytest.approx(k, rel=1e-6)
    assert std == pytest.approx(0.0, abs=1e-6)
    one_class = np.eye(k)[np.zeros(50, int)]
    assert inception_score(one_class, splits=1)[0] == pytest.approx(1.0, abs=1e-6)


# ------------------------------------------------------------------------ names
def test_metric_names():
    s = parse_metric("fvd2048_128f", 16, 256)
    assert (s.kind, s.detector, s.frames, s.count) == ("fvd", "i3d", 128, 2048)
    s = parse_metric("fvdsynth_64f", 16, 256)
    assert (s.kind, s.detector, s.frames, s.count) == ("fvd", "synth", 64, 256)
    assert parse_metric("issynth", 16, 100).frames == 16
    assert parse_metric("accsynth_64f", 16, 100).frames == 64
    for bad in ("fid", "fvd_16f", "fvdsynth", "fvd2048_0f"):
        with pytest.raises(CvgError) as e:
            parse_metric(bad, 16, 256)
        assert "\n" not in str(e.value)


# --------------------------------------------------- the real-statistics cache
class _ColourMotion(VideoFeatureNet):
    """A cheap deterministic stand-in detector: mean colour and motion per window."""

    name = "colour-motion"
    detector_hash = "0123456789abcdef"
    feature_dim = 6
    num_classes = 2
    clip_frames = 8
    preprocessing = "none"

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward_clip(self, v):
        self.calls += 1
        x = v.float() / 255
        colour = x.mean(dim=(1, 2, 3))
        motion = (x[:, 1:] - x[:, :-1]).abs().mean(dim=(1, 2, 3))
        f = torch.cat([colour, motion], 1)
        p = torch.softmax(torch.stack([colour[:, 0], colour[:, 1]], 1) * 10, 1)
        return f, p


def test_real_stats_cache_hits_then_misses_when_an_option_changes(synth_data):
    from cvg_fast.metrics.suite import MetricSuite

    spec = parse_metric("fvdsynth_8f", 8, 6)
    net = _ColourMotion()
    a = MetricSuite([spec], synth_data, size=16, detectors={"synth": net}, progress=False)
    stats, hit = a.real_stats(spec)
    assert not hit and stats.count == 6 and net.calls > 0
    calls = net.calls
    b = MetricSuite([spec], synth_data, size=16, detectors={"synth": net}, progress=False)
    stats2, hit = b.real_stats(spec)
    assert hit and net.calls == calls
    np.testing.assert_array_equal(stats2.mean_cov()[0], stats.mean_cov()[0])
    for change in (dict(seed=1), dict(size=32), dict(stride=2)):
        kw = dict(size=16) | change
        c = MetricSuite([spec], synth_data, detectors={"synth": net}, progress=False, **kw)
        _, hit = c.real_stats(spec)
        assert not hit, change
    _, hit = MetricSuite([parse_metric("fvdsynth_8f", 8, 5)], synth_data, size=16,
                         detectors={"synth": net}, progress=False).real_stats(
        parse_metric("fvdsynth_8f", 8, 5))
    assert not hit
    other = _ColourMotion()
    other.detector_hash = "fedcba9876543210"
    _, hit = MetricSuite([spec], synth_data, size=16, detectors={"synth": other},
                         progress=False).real_stats(spec)
    assert not hit


def test_suite_scores_a_source_and_counts_clips(synth_data):
    from cvg_fast.metrics.sources import folder_source
    from cvg_fast.metrics.suite import MetricSuite, append_jsonl, format_table

    specs = [parse_metric(n, 8, 6) for n in ("fvdsynth_8f", "fvdsynth_16f", "issynth", "accsynth")]
    suite = MetricSuite(specs, synth_data, size=16, detectors={"synth": _ColourMotion()},
                        progress=False)
    res = suite.evaluate(folder_source(synth_data, 16, seed=5), "real")
    assert res["fvdsynth_8f"].protocol["num_real"] == 6
    assert res["fvdsynth_8f"].protocol["num_fake"] == 6
    assert res["fvdsynth_16f"].protocol["windows"] == 8
    assert 1.0 <= res["issynth"].value <= 2.0
    assert 0.0 <= res["accsynth"].value <= 1.0
    # the real clips scored as if generated: the very same clips, so distance ~0
    one = MetricSuite(specs[:1], synth_data, size=16, detectors={"synth": _ColourMotion()},
                      progress=False)
    same = one.evaluate(folder_source(synth_data, 16, seed=0), "same")
    assert same["fvdsynth_8f"].value == pytest.approx(0.0, abs=1e-6)
    assert res["fvdsynth_8f"].value > 1e-4  # other clips: not zero
    table = format_table({"real": res, "same": same}, specs)
    assert "fvdsynth_16f" in table and "real" in table and "6 generated vs 6 real" in table
    log = synth_data.parent / "m.jsonl"
    append_jsonl(log, res, run="x")
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["metric"] for r in rows] == [s.name for s in specs]
    assert rows[0]["num_real"] == 6 and rows[0]["detector_hash"] == "0123456789abcdef"


def test_fewer_videos_than_asked_is_one_line(synth_data):
    from cvg_fast.metrics.suite import MetricSuite

    spec = parse_metric("fvdsynth_8f", 8, 50)
    net = _ColourMotion()
    with pytest.raises(CvgError) as e:  # at once, before any detector work
        MetricSuite([spec], synth_data, size=16, detectors={"synth": net}, progress=False)
    assert net.calls == 0
    msg = str(e.value)
    assert "\n" not in msg and "8 usable videos" in msg and "--num-videos" in msg


# ---------------------------------------------------------------------- sources
def test_upsample_to_is_linear_in_time_and_keeps_constants():
    from cvg_fast.ops import downsample_to, upsample_to

    x = torch.zeros(1, 4, 3, 8, 8)
    for t in range(4):
        x[:, t] = t
    y = upsample_to(x, 8, 16)
    assert y.shape == (1, 8, 3, 16, 16)
    # input frame i at output frame 2i (where f_t looks), linear between, the last one held
    want = torch.tensor([0, 0.5, 1, 1.5, 2, 2.5, 3, 3.0])
    torch.testing.assert_close(y[0, :, 0, 5, 5], want)
    torch.testing.assert_close(downsample_to(y, 4, 8), x)
    with pytest.raises(ValueError, match="multiple"):
        upsample_to(x, 6, 16)
    c = torch.full((2, 3, 3, 4, 4), 0.3)
    torch.testing.assert_close(upsample_to(c, 6, 8), torch.full((2, 6, 3, 8, 8), 0.3))
    assert downsample_to(upsample_to(c, 6, 8), 3, 4).shape == c.shape


# ------------------------------------------------------------- the training hook
@pytest.fixture(scope="module")
def plumbing_evaluator(synth_data):
    """A synthetic-set evaluator trained for a few steps: its heads run, measure nothing."""
    import warnings

    from cvg_fast.data.synthetic import read_synthetic_spec
    from cvg_fast.metrics import synth_evaluator as se

    with warnings.catch_warnings():  # "reached only x% accuracy": not its job here
        warnings.simplefilter("ignore", RuntimeWarning)
        net, _ = se.train_synth_evaluator(read_synthetic_spec(synth_data), progress=False,
                                          budget=dict(se.BUDGETS["tiny"], steps=2))
    return net


@pytest.mark.parametrize("level", [1, 2])
def test_eval_every_logs_the_metric_and_leaves_training_mode(synth_data, tiny_cfg, tmp_path,
                                                             level, plumbing_evaluator):
    from cvg_fast.metrics.run_eval import training_eval
    from cvg_fast.training import train_level

    tiny_cfg.train.steps = 2
    tiny_cfg.train.checkpoint_every = tiny_cfg.train.sample_every = 2
    hook = training_eval(synth_data, tiny_cfg, level, num_videos=4,
                         detectors={"synth": plumbing_evaluator})
    seen = []

    def spy(cascade):
        seen.append((cascade.num_levels, cascade.generators[-1].training))
        return hook(cascade)

    if level == 2:
        train_level(tiny_cfg, 1, synth_data, tmp_path, device="cpu", progress=False)
    train_level(tiny_cfg, level, synth_data, tmp_path, device="cpu", progress=False,
                eval_fn=spy, eval_every=1)
    assert seen == [(level, False), (level, False)]  # steps 1 and 2, G in eval mode
    rows = [json.loads(line) for line in (tmp_path / f"level{level}" / "log.jsonl").open()]
    evals = [r["eval"] for r in rows if "eval" in r]
    assert [e["step"] for e in evals] == [1, 2]
    motion = ["speedsynth_16f", "speedsynth_64f", "flickersynth_16f", "flickersynth_64f"]
    assert [k for k in evals[0] if k not in ("step", "eval_seconds")] == ["fvdsynth_16f", *motion]
    assert all(np.isfinite(e[k]) and e[k] > 0 for e in evals for k in ["fvdsynth_16f", *motion])
    best = json.loads((tmp_path / f"level{level}" / "best.json").read_text())
    assert best["metric"] == "fvdsynth_16f"  # chosen on the FVD, not on a motion ratio


def test_real_clips_with_a_file_damaged_mid_stream(tmp_path):
    """Probes fine, fails while decoding: a one-line error, or with skip_bad a warning and
    the next video of the seeded order in its place."""
    import warnings

    from cvg_fast.data import write_video
    from cvg_fast.metrics.sources import RealClips

    root = tmp_path / "ds"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c", "d"):
        write_video(root / f"{name}.mp4", rng.integers(0, 255, (30, 32, 32, 3), np.uint8), 10)
    data = bytearray((root / "b.mp4").read_bytes())
    a, b = int(len(data) * 0.3), int(len(data) * 0.7)
    data[a:b] = bytes(b - a)
    (root / "b.mp4").write_bytes(bytes(data))
    strict = RealClips(root, 30, 16)
    with pytest.raises(CvgError) as e:
        list(strict(4))
    assert "b.mp4" in str(e.value) and "\n" not in str(e.value)
    warned = 0
    for seed in range(6):  # the seeded order puts b.mp4 among the first 3 for some seeds
        lenient = RealClips(root, 30, 16, seed=seed, skip_bad=True)
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            arrs = [arr for arr, _ in lenient(3, batch_size=2)]
        assert sum(len(x) for x in arrs) == 3
        warned += any("b.mp4" in str(w.message) for w in rec)
    assert warned > 0
    with pytest.raises(CvgError) as e:  # only 3 of the 4 videos read
        list(lenient(4))
    assert "only 3 of 4" in str(e.value)
