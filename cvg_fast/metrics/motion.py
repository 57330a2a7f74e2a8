"""Motion per time window: does a long video keep moving, and does it flicker?

Why: FVD averaged over a long video does not say "the video stopped" (real clips frozen
after frame 16 score FVD-synth-64f 98, a cascade whose shapes stand still 85). These
numbers do, window by window, each as a ratio to real clips:

- speed: object speed read by the synthetic-set evaluator's velocity head, px per frame
  at the evaluator's 32 px, mean over a 16-frame window's 15 steps and over the videos
  (`window_speed`). Only meaningful on the built-in synthetic data.
- flicker: mean |frame t+1 - frame t| over a window, in 0-255 levels at the video's own
  size (`window_flicker`). Motion raises it too: a ratio ~1 with speed ~1 is right, a
  ratio > 1 with speed ~1 is flicker, both << 1 is a still image.
- flow: mean optical-flow magnitude (OpenCV's Farneback), px per frame at the video's
  size (`window_flow`), for real datasets where no evaluator exists.

Shapes: uint8 videos (N, T, H, W, 3) -> per-video window values (N, T // window) float64,
averaged over videos (streamed, batch by batch) by `MotionAccumulator` into (T // window,).
A trailing remainder shorter than a window is dropped. `MetricSuite` (suite.py) runs them
as the metrics speedsynth_{L}f, flickersynth_{L}f and flow_{L}f.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cvg_fast.errors import CvgError

__all__ = ["MOTION_VERSION", "MOTION_WINDOW", "MotionAccumulator", "measure_method",
           "measure_units", "measure_windows", "window_flicker", "window_flow", "window_speed",
           "window_ratios", "worst_ratio"]

MOTION_WINDOW = 16  # frames per window: the evaluator's clip length
MOTION_VERSION = 1  # bump when a measurement changes: it keys the cached real references


def _check(videos, window: int) -> np.ndarray | torch.Tensor:
    if videos.ndim != 5 or videos.shape[-1] != 3 or videos.dtype not in (np.uint8, torch.uint8):
        raise CvgError(f"motion metrics take uint8 videos (N, T, H, W, 3), got "
                       f"{videos.dtype} {tuple(videos.shape)}")
    if videos.shape[1] < window:
        raise CvgError(f"motion metrics need at least {window} frames per video, got "
                       f"{videos.shape[1]}")
    return videos


@torch.inference_mode()
def window_speed(net, videos, window: int = MOTION_WINDOW) -> np.ndarray:
    """Evaluator velocity head -> (N, T // window) mean speed, px/frame at its input size."""
    _check(videos, window)
    if getattr(net, "clip_frames", None) != window:
        raise CvgError(f"speed needs the synthetic-set evaluator ({window}-frame clips)")
    from cvg_fast.metrics.synth_evaluator import NET_SIZE, _CHUNK

    x = torch.as_tensor(np.asarray(videos)) if not torch.is_tensor(videos) else videos
    x = x.to(net.device)
    n, t = x.shape[:2]
    out = np.zeros((n, t // window))
    for k in range(t // window):
        clip = x[:, k * window:(k + 1) * window]
        for s in range(0, n, _CHUNK):
            v = net.heads(net.features(net.preprocess(clip[s:s + _CHUNK])))["velocity"]
            # the head's targets are centre steps in 1/16 of the frame (synth_evaluator)
            px = v.float().norm(dim=-1) * (NET_SIZE / 16.0)  # (B, window - 1)
            out[s:s + _CHUNK, k] = px.mean(dim=1).cpu().numpy()
    return out


def window_flicker(videos, window: int = MOTION_WINDOW) -> np.ndarray:
    """(N, T // window) mean |frame t+1 - frame t| in 0-255 levels, within each window."""
    _check(videos, window)
    x = torch.as_tensor(np.asarray(videos)) if not torch.is_tensor(videos) else videos.cpu()
    n, t = x.shape[:2]
    out = np.zeros((n, t // window))
    for k in range(t // window):
        clip = x[:, k * window:(k + 1) * window].float()
        out[:, k] = (clip[:, 1:] - clip[:, :-1]).abs().mean(dim=(1, 2, 3, 4)).numpy()
    return out


def _cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - install.sh installs it
        raise CvgError("the flow motion metric needs OpenCV: pip install "
                       "opencv-python-headless") from e
    return cv2


def window_flow(videos, window: int = MOTION_WINDOW) -> np.ndarray:
    """(N, T // window) mean Farneback optical-flow magnitude, px/frame at the video's size.

    Flow is computed on grey frames between consecutive frames of a window. Needs
    `opencv-python-headless` (installed by scripts/install.sh).
    """
    _check(videos, window)
    cv2 = _cv2()
    arr = videos.cpu().numpy() if torch.is_tensor(videos) else np.asarray(videos)
    n, t, h = arr.shape[:3]
    # Farneback's pyramid wants a few levels of at least ~8 px: smaller frames take fewer
    levels = max(1, min(3, int(math.log2(max(h, 8) / 8))))
    win = max(5, min(15, h // 8 | 1))
    out = np.zeros((n, t // window))
    for i in range(n):
        grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in arr[i, : (t // window) * window]]
        for k in range(t // window):
            mags = []
            for j in range(k * window, (k + 1) * window - 1):
                flow = cv2.calcOpticalFlowFarneback(grey[j], grey[j + 1], None, 0.5, levels,
                                                    win, 3, 5, 1.1, 0)
                mags.append(np.sqrt((flow ** 2).sum(-1)).mean())
            out[i, k] = float(np.mean(mags))
    return out


def measure_windows(measure: str, videos, net=None) -> np.ndarray:
    """uint8 (N, T, H, W, 3) -> (N, T // 16) per-window values of "speed" (needs the
    evaluator `net`), "flicker" or "flow"."""
    if measure == "speed":
        return window_speed(net, videos)
    if measure == "flicker":
        return window_flicker(videos)
    if measure == "flow":
        return window_flow(videos)
    raise ValueError(f"unknown motion measure {measure!r}")


def measure_units(measure: str, size: int) -> str:
    """The unit of a measure's per-window values, for the protocol and the printed lines."""
    from cvg_fast.metrics.synth_evaluator import NET_SIZE

    return {"speed": f"px/frame at {NET_SIZE}px", "flicker": "levels/frame in 0-255",
            "flow": f"px/frame at {size}px"}[measure]


def measure_method(measure: str) -> str:
    """What computes a pixel-only measure (its protocol's detector and cache key)."""
    if measure == "flow":
        return f"OpenCV {_cv2().__version__} Farneback flow on grey frames"
    return {"flicker": "mean |frame t+1 - frame t|"}[measure]


class MotionAccumulator:
    """Per-window sums over batches: feed (N, n_win) arrays, read the per-window means."""

    def __init__(self):
        self.total: np.ndarray | None = None
        self.count = 0

    def update(self, per_video: np.ndarray) -> None:
        s = per_video.sum(axis=0)
        if self.total is None:
            self.total = s.astype(np.float64)
        else:
            if len(s) != len(self.total):
                raise ValueError(f"window count changed: {len(s)} vs {len(self.total)}")
            self.total += s
        self.count += len(per_video)

    def means(self) -> np.ndarray:
        if self.total is None or self.count == 0:
            raise CvgError("no videos were measured")
        return self.total / self.count


def window_ratios(fake: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Per-window fake / real. Real motion is stationary: windows past the real clips'
    length are divided by the mean over every real window."""
    ref = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    den = np.full(len(fake), ref.mean())
    den[:min(len(ref), len(fake))] = ref[:len(fake)]
    den = np.maximum(den, 1e-9)
    return fake / den


def worst_ratio(ratios: np.ndarray) -> float:
    """The window furthest from 1 (in log terms): 0.5 and 2.0 are equally bad."""
    r = np.maximum(np.asarray(ratios, dtype=np.float64), 1e-9)
    return float(r[np.argmax(np.abs(np.log(r)))])
