"""Motion per 16-frame window (speedsynth, flickersynth, flow): ratios ~1 for real clips,
a frozen video, a flickering one and a faster one told apart; `cvg eval` shrinking its
defaults to a small data folder in one line.

Real clips come from two synthetic datasets written with different seeds: A is the data
folder (the reference), B stands in for generated videos. Speed needs the evaluator's
velocity head to be accurate: those tests train it with the "reduced" budget (slow);
the others need no network, or any evaluator (a few plumbing steps).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cvg_fast.data.synthetic import read_synthetic_spec, write_synthetic_dataset
from cvg_fast.data.video_io import read_clip
from cvg_fast.errors import CvgError
from cvg_fast.metrics import parse_metric
from cvg_fast.metrics import synth_evaluator as se
from cvg_fast.metrics.motion import window_flow
from cvg_fast.metrics.suite import MetricSuite, format_motion, format_table

FRAMES = 64
SIZE = 32
KW = dict(num_classes=4, size=SIZE, fps=8, progress=False)
PLUMBING = dict(se.BUDGETS["tiny"], steps=12, batch_size=16)  # runs, measures nothing


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """(folder A, videos of B: uint8 (64, 64, 32, 32, 3)): two seeds of one distribution."""
    root = tmp_path_factory.mktemp("motion")
    a = write_synthetic_dataset(root / "a", seed=0, videos_per_class=16, frames=FRAMES, **KW)
    b = write_synthetic_dataset(root / "b", seed=1, videos_per_class=16, frames=FRAMES, **KW)
    videos = np.stack([read_clip(f, 0, FRAMES, 1, None) for f in sorted(b.glob("*/*.mp4"))])
    return a, videos


@pytest.fixture(scope="module")
def evaluator(sets):
    net, _ = se.train_synth_evaluator(read_synthetic_spec(sets[0]), seed=0, progress=False,
                                      budget="reduced")
    return net


@pytest.fixture(scope="module")
def plumbing(sets):
    with warnings.catch_warnings():  # "reached only x% accuracy": not its job here
        warnings.simplefilter("ignore", RuntimeWarning)
        net, _ = se.train_synth_evaluator(read_synthetic_spec(sets[0]), seed=0,
                                          progress=False, budget=PLUMBING)
    return net


def _source(videos: np.ndarray):
    """Videos held in memory, as a metric source (unconditional)."""
    def source(count, frames):
        for s in range(0, count, 16):
            yield videos[s:min(s + 16, count), :frames], None
    return source


def _suite(data, names, evaluator=None, count=64):
    specs = [parse_metric(n, 16, count) for n in names]
    return MetricSuite(specs, data, size=SIZE, progress=False,
                       detectors={"synth": evaluator} if evaluator else None)


def _frozen_after_16(videos):
    frozen = videos.copy()
    frozen[:, 16:] = frozen[:, 15:16]
    return frozen


def _assert_real_like(r, lo=0.85, hi=1.15):
    assert len(r.protocol["ratios"]) == 4 and r.protocol["window"] == 16
    assert all(lo <= x <= hi for x in r.protocol["ratios"]), (r.name, r.protocol["ratios"])
    assert r.value in r.protocol["ratios"] and r.formatted() == f"{r.value:.2f}x"
    assert len(r.protocol["fake_per_window"]) == len(r.protocol["real_per_window"]) == 4


def test_flicker_and_flow_of_real_clips_match_other_real_clips(sets):
    a, b = sets
    names = ["flickersynth_64f", "flow_64f"]
    suite = _suite(a, names)  # no network: nothing is loaded or trained
    res = suite.evaluate(_source(b), "real")
    for n in names:
        _assert_real_like(res[n])
    assert res["flow_64f"].protocol["units"] == "px/frame at 32px"
    assert "Farneback" in res["flow_64f"].protocol["detector"]
    lines = format_motion({"real": res}, suite.specs).splitlines()
    assert len(lines) == 2 and lines[0].startswith("flickersynth_64f  real      ")
    ratios = " ".join(f"{x:.2f}" for x in res["flickersynth_64f"].protocol["ratios"])
    assert f"real      {ratios}  (worst " in lines[0] and "levels/frame" in lines[0]
    assert f"{res['flow_64f'].value:.2f}x" in format_table({"real": res}, suite.specs)
    # the real per-window means are cached like the FVD statistics
    again = _suite(a, names[:1]).evaluate(_source(b), "real")["flickersynth_64f"]
    assert again.protocol["real_stats_cached"] and not res["flickersynth_64f"].protocol[
        "real_stats_cached"]
    assert again.value == pytest.approx(res["flickersynth_64f"].value)
    frozen = _suite(a, names[:1]).evaluate(_source(_frozen_after_16(b)), "frozen")
    assert all(r < 0.05 for r in frozen["flickersynth_64f"].protocol["ratios"][1:])


@pytest.mark.slow
def test_real_speed_matches_other_real_clips(sets, evaluator):
    a, b = sets
    r = _suite(a, ["speedsynth_64f"], evaluator).evaluate(_source(b), "real")["speedsynth_64f"]
    _assert_real_like(r)
    assert r.protocol["units"] == "px/frame at 32px"
    # shapes move size/24 .. size/10 px per frame one way, twice that the other
    assert 1.0 < np.mean(r.protocol["real_per_window"]) < 3.0


@pytest.mark.slow
def test_a_video_frozen_after_16_frames_stops_moving(sets, evaluator):
    a, b = sets
    res = _suite(a, ["speedsynth_64f"], evaluator).evaluate(_source(_frozen_after_16(b)),
                                                            "frozen")
    speed = res["speedsynth_64f"].protocol["ratios"]
    assert 0.85 <= speed[0] <= 1.15, speed
    assert all(r < 0.3 for r in speed[1:]), speed
    assert res["speedsynth_64f"].value < 0.3


def test_temporal_noise_is_flicker(sets):
    a, b = sets
    rng = np.random.default_rng(0)
    noisy = np.clip(b + rng.normal(0, 8, b.shape), 0, 255).astype(np.uint8)
    res = _suite(a, ["flickersynth_64f"]).evaluate(_source(noisy), "noisy")
    assert all(r > 1.5 for r in res["flickersynth_64f"].protocol["ratios"])


def test_flow_ranks_twice_as_fast_above(sets):
    a, b = sets
    suite = _suite(a, ["flow_32f"], count=32)
    orig = suite.evaluate(_source(b[:32, :32]), "orig")["flow_32f"]
    fast = suite.evaluate(_source(np.ascontiguousarray(b[:32, ::2])), "fast")["flow_32f"]
    assert all(f > 1.5 * o for f, o in zip(fast.protocol["ratios"], orig.protocol["ratios"]))
    assert window_flow(b[:4, ::2]).mean() > 1.5 * window_flow(b[:4, :32]).mean()


def test_real_reference_from_shorter_videos(tmp_path, sets, plumbing):
    """Videos shorter than L: the reference comes from the longest multiple of 16 served,
    windows past it are divided by the mean real window; an FVD at L is refused."""
    data = write_synthetic_dataset(tmp_path / "short", seed=0, videos_per_class=2, frames=40,
                                   **KW)
    suite = _suite(data, ["flickersynth_64f"], count=8)
    r = suite.evaluate(_source(sets[1][:8]), "b")["flickersynth_64f"]
    assert r.protocol["real_frames"] == 32 and len(r.protocol["real_per_window"]) == 2
    real, fake = r.protocol["real_per_window"], r.protocol["fake_per_window"]
    assert r.protocol["ratios"][3] == pytest.approx(fake[3] / np.mean(real))
    assert any("real reference from 32-frame clips" in line for line in suite.describe())
    with pytest.raises(CvgError) as e:
        _suite(data, ["fvdsynth_64f"], plumbing, count=8)
    assert "\n" not in str(e.value) and "8 videos of 40 frames" in str(e.value)
    with pytest.raises(CvgError) as e:
        _suite(data, ["speedsynth_16f"], plumbing, count=9)
    assert "\n" not in str(e.value) and "--num-videos 8" in str(e.value)


def test_motion_metric_names():
    s = parse_metric("speedsynth_64f", 16, 128)
    assert (s.kind, s.detector, s.measure, s.frames, s.count) == ("motion", "synth", "speed",
                                                                 64, 128)
    assert parse_metric("flickersynth_16f", 16, 8).measure == "flicker"
    assert parse_metric("FLOW_48f", 16, 8).detector == "none"
    assert parse_metric("flow_48f", 16, 8).needs_real
    for bad in ("speedsynth", "speedsynth_8f", "flow_0f", "flowsynth_16f", "flicker_16f",
                "speedsynth_16", "flow16f"):
        with pytest.raises(CvgError) as e:
            parse_metric(bad, 16, 8)
        assert "\n" not in str(e.value)


def test_cvg_eval_shrinks_its_defaults_to_the_data(tmp_path, capsys, monkeypatch, plumbing):
    """`cvg data synth`-like folder (fewer, shorter videos than the defaults): scored with
    one line saying what shrank; a metric asked by name that cannot be served: one line."""
    from conftest import narrow_tiny

    from cvg_fast.cli import main
    from cvg_fast.training import train_level

    data = write_synthetic_dataset(tmp_path / "data", seed=0, videos_per_class=4, frames=48,
                                   **KW)
    cfg = narrow_tiny()
    cfg.train.steps = 1
    run = tmp_path / "run"
    for level in (1, 2):
        train_level(cfg, level, data, run, device="cpu", progress=False)
    monkeypatch.setattr(se, "load_synth_evaluator", lambda *a, **k: plumbing)
    capsys.readouterr()
    assert main(["eval", str(run), "--data", str(data), "--no-progress"]) == 0
    out = capsys.readouterr().out
    want = ("data has 16 videos of 48 frames: --num-videos 256 -> 16; fvdsynth_64f dropped "
            "(needs 64-frame clips); speedsynth_64f's and flickersynth_64f's real references "
            "from 48-frame clips")
    assert want in out.splitlines(), out
    for name in ("fvdsynth_16f", "issynth", "accsynth", "speedsynth_16f", "flickersynth_64f"):
        assert name in out
    per_window = [line.split() for line in out.splitlines()]
    assert sum(w[:2] == ["speedsynth_64f", "cascade"] and len(w) >= 6 for w in per_window) == 1
    assert main(["eval", str(run), "--data", str(data), "--metrics", "fvdsynth_64f"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: fvdsynth_64f needs real clips of 64")
