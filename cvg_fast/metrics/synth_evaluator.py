"""The synthetic-set evaluator: a small 3D CNN whose features give FVD-synth.

Why: I3D is too big for CPU and knows nothing about moving coloured shapes; on the
built-in synthetic dataset (`cvg_fast.data.synthetic`) we can instead train, in about a
minute on two CPU cores, a network that sees exactly what we judge there. Its
penultimate features (N, 128) give FVD-synth (Fréchet distance of real vs generated
feature Gaussians), its class probabilities (N, K) IS-synth and the class accuracy of
class-conditional samples.

What it learns, all from shared 128-d features through linear heads, so each property
is linearly readable from the features the Fréchet distance compares:

- the class (colour, shape, motion);
- the shape's centre in each of the 16 frames and its per-frame velocity (motion,
  temporal order), from the renderer's ground truth;
- which degradation of `cvg_fast.metrics.degrade` a clip went through (none, blur,
  noise, frozen frames, shuffled frames) and how strongly (sharpness, texture,
  temporal coherence): the distance then grows with each degradation's strength.

Training data: fresh renders of the dataset's classes and seed with video indices
offset by 1,000,000 (disjoint from any dataset), random 16-frame windows of longer
renders, pre-rendered once into a pool. Half of the pool gets the look of the dataset's
codec (its pixel format's chroma subsampling, `_CodecLook`) and is labelled clean like
the raw renders, so an encoded real video and an unencoded generated one of the same
content look alike to the features. A held-out set (video indices offset by 2,000,000,
all with the codec look, as the real data has) measures the heads; class accuracy
should reach `MIN_ACCURACY` (a warning says when it does not). Training runs under
bf16 autocast where oneDNN has bf16 kernels (~2.5x faster on AVX512 CPUs); the
weights stay float32 and inference runs in float32.

Shapes: uint8 videos (N, 16, H, W, 3) -> resized to 32x32 (bilinear, antialiased),
[-1, 1], plus the absolute difference to the previous frame: (N, 6, 16, 32, 32) ->
four strided conv3d blocks -> (N, 128, 2, 4, 4) -> flattened -> linear + BatchNorm +
ReLU -> features (N, 128) -> class logits (N, K), centres (N, 16, 2), velocities
(N, 15, 2), degradation logits (N, 5), strength-level logits (N, 4, 9).

Budgets (`BUDGETS`): "full" (~70 s on two busy AVX512 cores, 100% held-out class
accuracy on the 4-class demo set), "reduced" (~30 s, for tests), "tiny" (plumbing).

The trained network is cached next to the data (`cache.cache_dir`) under a key of
everything that changes it (the spec's classes, size, seed and codec, the evaluator's
seed and budget, `EVALUATOR_VERSION`), so `load_synth_evaluator` trains once and then
loads in milliseconds.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
import time
import warnings
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from av.video.reformatter import VideoReformatter
from torch import nn

from cvg_fast.data.synthetic import read_synthetic_spec, render_synthetic_clip
from cvg_fast.data.video_io import _pick_pix_fmt
from cvg_fast.errors import CvgError
from cvg_fast.metrics import degrade as dg
from cvg_fast.metrics.cache import cache_dir, options_key
from cvg_fast.metrics.feature_net import VideoFeatureNet

__all__ = [
    "BUDGETS",
    "EVALUATOR_VERSION",
    "SynthEvaluator",
    "evaluator_cache_path",
    "load_synth_evaluator",
    "train_synth_evaluator",
]

EVALUATOR_VERSION = 1  # bump when the network, its training or its data change
NET_SIZE = 32
CLIP_FRAMES = 16
FEATURE_DIM = 128
WIDTHS = (32, 64, 128, 128)
MIN_ACCURACY = 0.95
TRAIN_OFFSET = 1_000_000  # video indices of the training renders
HELDOUT_OFFSET = 2_000_000  # video indices of the held-out renders
_FORMAT = "cvg_fast.synth_evaluator"
_CHUNK = 128  # clips per forward pass in forward_clip: bounds activation memory

# Degradation classes of the degradation head, and the strength a uniform 1 stands for.
DEGRADATION_NAMES = ("none", "blur", "noise", "freeze", "shuffle")
TRAIN_MAX_STRENGTH = {"blur": 2.0, "noise": 24.0, "freeze": 1.0, "shuffle": 1.0}
# Strength is learnt as ordinal levels: one logit per (degradation, level) for "strength
# above this fraction of the maximum". Each level passed moves the features further, so
# the Fréchet distance keeps growing with the strength instead of jumping once to a
# "degraded" cluster (a single regression output left noise 4 -> 8 -> 16 flat).
LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

# Training sizes. pool_videos renders of pool_frames frames (half with the codec look) are
# cut into random 16-frame windows for `steps` batches; heldout_videos measure the heads.
BUDGETS: dict[str, dict] = {
    "full": dict(pool_videos=1024, pool_frames=48, steps=560, batch_size=64, lr=2e-3,
                 heldout_videos=256),
    "reduced": dict(pool_videos=384, pool_frames=40, steps=320, batch_size=48, lr=2e-3,
                    heldout_videos=128),
    "tiny": dict(pool_videos=32, pool_frames=24, steps=4, batch_size=8, lr=2e-3,
                 heldout_videos=16),
}


def _budget(budget: str | dict) -> dict:
    if isinstance(budget, str):
        if budget not in BUDGETS:
            raise CvgError(f"unknown evaluator budget {budget!r}; choose from "
                           f"{', '.join(BUDGETS)} or pass a dict like BUDGETS['full']")
        return {"name": budget, **BUDGETS[budget]}
    missing = set(BUDGETS["full"]) - set(budget)
    if missing:
        raise CvgError(f"evaluator budget dict lacks {', '.join(sorted(missing))}")
    return {"name": "custom", **budget}


# --------------------------------------------------------------------------- network


def _block(cin: int, cout: int, stride: tuple[int, int, int]) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm3d(cout),
                         nn.ReLU(inplace=True))


class SynthEvaluator(VideoFeatureNet):
    """The evaluator network: uint8 (N, 16, H, W, 3) -> features (N, 128), probs (N, K)."""

    name = "synth-evaluator"
    clip_frames = CLIP_FRAMES
    feature_dim = FEATURE_DIM

    def __init__(self, num_classes: int, widths: tuple[int, ...] = WIDTHS,
                 feature_dim: int = FEATURE_DIM):
        super().__init__()
        self.num_classes = int(num_classes)
        self.feature_dim = int(feature_dim)
        self.widths = tuple(int(w) for w in widths)
        self.preprocessing = (f"resized to {NET_SIZE}x{NET_SIZE} (bilinear, antialiased), "
                              f"values in [-1, 1]")
        self.trained_now = False  # True when load_synth_evaluator had to train it
        self.report: dict = {}
        strides = ((1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 1, 1))  # -> (T/8, S/8, S/8) = (2, 4, 4)
        chans = (6, *self.widths)
        self.trunk = nn.Sequential(*(_block(chans[i], chans[i + 1], s)
                                     for i, s in enumerate(strides)))
        grid = (CLIP_FRAMES // 8) * (NET_SIZE // 8) ** 2
        self.feature = nn.Sequential(nn.Flatten(), nn.Linear(self.widths[-1] * grid, feature_dim),
                                     nn.BatchNorm1d(feature_dim), nn.ReLU(inplace=True))
        self.head_class = nn.Linear(feature_dim, self.num_classes)
        self.head_motion = nn.Linear(feature_dim, CLIP_FRAMES * 2 + (CLIP_FRAMES - 1) * 2)
        self.head_degradation = nn.Linear(feature_dim, len(DEGRADATION_NAMES))
        self.head_strength = nn.Linear(feature_dim, (len(DEGRADATION_NAMES) - 1) * len(LEVELS))

    @staticmethod
    def preprocess(videos: torch.Tensor) -> torch.Tensor:
        """uint8 (N, T, H, W, 3) -> float32 (N, 6, T, 32, 32): the frames in [-1, 1] and
        their absolute difference to the previous frame (0 for the first frame), so a
        stalled or jumping frame is plain to see."""
        n, t, h, w, _ = videos.shape
        x = videos.permute(0, 1, 4, 2, 3).float().div_(127.5).sub_(1.0)  # (N, T, 3, H, W)
        if (h, w) != (NET_SIZE, NET_SIZE):
            x = F.interpolate(x.reshape(n * t, 3, h, w), size=(NET_SIZE, NET_SIZE),
                              mode="bilinear", align_corners=False, antialias=True)
            x = x.reshape(n, t, 3, NET_SIZE, NET_SIZE)
        diff = torch.zeros_like(x)
        diff[:, 1:] = (x[:, 1:] - x[:, :-1]).abs_()
        return torch.cat([x, diff], dim=2).transpose(1, 2).contiguous()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed (N, 3, 16, 32, 32) -> penultimate features (N, 128)."""
        return self.feature(self.trunk(x))

    def heads(self, f: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features (N, 128) -> every head's raw output (see the module docstring)."""
        motion = self.head_motion(f)
        n = f.shape[0]
        return {"class": self.head_class(f),
                "centre": motion[:, :CLIP_FRAMES * 2].reshape(n, CLIP_FRAMES, 2),
                "velocity": motion[:, CLIP_FRAMES * 2:].reshape(n, CLIP_FRAMES - 1, 2),
                "degradation": self.head_degradation(f),
                "strength": self.head_strength(f).reshape(n, len(DEGRADATION_NAMES) - 1,
                                                          len(LEVELS))}

    def forward_clip(self, videos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (N, 16, H, W, 3) -> features float32 (N, 128), class probs float32 (N, K)."""
        if videos.shape[1] != CLIP_FRAMES:
            raise CvgError(f"{self.name} takes {CLIP_FRAMES}-frame clips, got "
                           f"{videos.shape[1]}; score() cuts longer clips into windows")
        feats, probs = [], []
        for s in range(0, videos.shape[0], _CHUNK):
            f = self.features(self.preprocess(videos[s:s + _CHUNK]))
            feats.append(f)
            probs.append(torch.softmax(self.head_class(f), dim=1))
        return torch.cat(feats), torch.cat(probs)

    def config(self) -> dict:
        return {"num_classes": self.num_classes, "widths": list(self.widths),
                "feature_dim": self.feature_dim}


def _state_hash(state: dict[str, torch.Tensor]) -> str:
    """sha256 (16 hex digits) of the weights: names, dtypes, shapes and bytes, in order."""
    h = hashlib.sha256()
    for k, v in state.items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- data


class _CodecLook:
    """Frames as the dataset's codec stores them, minus its quantisation: RGB -> the pixel
    format `VideoWriter` picks for the codec (yuv420p for h264: chroma at half resolution)
    -> RGB, by swscale as the decoder's conversion does.

    Why not the codec itself: x264 fed RGB frames through PyAV does not give the same
    bytes twice (about one video in ten differs), and the evaluator must be a pure
    function of its seed. This conversion is deterministic, 8x cheaper, and leaves a
    mean absolute difference of ~0.4 levels to a real CRF-10 h264 round trip (the raw
    render differs from it by ~2.0).
    """

    def __init__(self, codec: str, size: int):
        self.pix_fmt = _pick_pix_fmt(codec, size, size)
        self._sws = VideoReformatter()

    def __call__(self, video: np.ndarray) -> np.ndarray:
        out = np.empty_like(video)
        for t, img in enumerate(video):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            coded = self._sws.reformat(frame, format=self.pix_fmt, threads=1)
            out[t] = self._sws.reformat(coded, format="rgb24", threads=1).to_ndarray()
        return out


def _to_net_size(video: np.ndarray) -> np.ndarray:
    """uint8 (T, S, S, 3) -> uint8 (T, 32, 32, 3), resized as `SynthEvaluator.preprocess`."""
    if video.shape[1:3] == (NET_SIZE, NET_SIZE):
        return video
    x = torch.from_numpy(video).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(NET_SIZE, NET_SIZE), mode="bilinear", align_corners=False,
                      antialias=True)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _render_set(spec: dict, count: int, frames: int, offset: int, codec_fraction: float,
                rng: np.random.Generator, progress, desc: str):
    """`count` renders, classes round-robin, a `codec_fraction` of them with the codec look:
    uint8 (P, L, 32, 32, 3), centres (P, L, 2) in units of the frame size, labels (P,)."""
    size, k = int(spec["size"]), int(spec["num_classes"])
    codec = str(spec.get("codec") or "libx264")
    videos = np.empty((count, frames, NET_SIZE, NET_SIZE, 3), np.uint8)
    centres = np.empty((count, frames, 2), np.float32)
    labels = np.arange(count) % k
    encode = rng.random(count) < codec_fraction
    codec_look = _CodecLook(codec, size)
    for i in progress(range(count), desc=desc):
        video, c = render_synthetic_clip(int(labels[i]), offset + i // k, frames, size,
                                         int(spec["seed"]))
        videos[i] = _to_net_size(codec_look(video) if encode[i] else video)
        centres[i] = c / size
    return videos, centres, labels


def _degrade_batch(clips: np.ndarray, centres: np.ndarray, rng: np.random.Generator,
                   p_clean: float):
    """Degrade each clip at random in place: (clips, centres, degradation ids, strengths
    in [0, 1] of `TRAIN_MAX_STRENGTH`)."""
    n = len(clips)
    p = np.full(len(DEGRADATION_NAMES), (1 - p_clean) / (len(DEGRADATION_NAMES) - 1))
    p[0] = p_clean
    kinds = rng.choice(len(DEGRADATION_NAMES), size=n, p=p)
    amounts = rng.uniform(0.05, 1.0, size=n) * (kinds > 0)
    t = clips.shape[1]
    for i in range(n):
        name = DEGRADATION_NAMES[kinds[i]]
        if name == "none":
            continue
        s = float(amounts[i]) * TRAIN_MAX_STRENGTH[name]
        if name == "blur":
            clips[i] = dg.blur(clips[i:i + 1], s)[0]
        elif name == "noise":
            clips[i] = dg.add_noise(clips[i:i + 1], s, rng)[0]
        else:
            make = dg.freeze_frame_index if name == "freeze" else dg.shuffle_frame_index
            idx = make(t, s, rng)
            clips[i], centres[i] = clips[i][idx], centres[i][idx]
    return clips, centres, kinds, amounts.astype(np.float32)


def _sample_batch(pool, rng: np.random.Generator, batch: int, p_clean: float):
    videos, centres, labels = pool
    idx = rng.integers(len(videos), size=batch)
    start = rng.integers(videos.shape[1] - CLIP_FRAMES + 1, size=batch)
    frames = start[:, None] + np.arange(CLIP_FRAMES)[None]
    clips = videos[idx[:, None], frames]  # (B, 16, 32, 32, 3) copy
    cents = centres[idx[:, None], frames]
    clips, cents, kinds, amounts = _degrade_batch(clips, cents, rng, p_clean)
    return clips, cents, labels[idx], kinds, amounts


def _targets(cents: np.ndarray, kinds: np.ndarray, amounts: np.ndarray):
    """Targets: centres and velocities scaled to ~unit range, strength levels (N, 4, 9)."""
    c = torch.from_numpy(cents)
    centre = (c - 0.5) * 4.0  # frame -> [-2, 2]
    velocity = (c[:, 1:] - c[:, :-1]) * 16.0  # ~0.7..1.6 for a moving shape
    strength = torch.zeros(len(kinds), len(DEGRADATION_NAMES) - 1, len(LEVELS))
    rows = np.nonzero(kinds > 0)[0]
    above = amounts[rows, None] > np.asarray(LEVELS)[None, :]
    strength[rows, kinds[rows] - 1] = torch.from_numpy(above.astype(np.float32))
    return centre, velocity, strength


def _losses(out: dict, labels, kinds, centre, velocity, strength) -> dict[str, torch.Tensor]:
    return {"class": F.cross_entropy(out["class"], labels),
            "degradation": F.cross_entropy(out["degradation"], kinds),
            "centre": F.mse_loss(out["centre"], centre),
            "velocity": F.smooth_l1_loss(out["velocity"], velocity),
            "strength": 4.0 * F.binary_cross_entropy_with_logits(out["strength"], strength)}


# --------------------------------------------------------------------------- training


@torch.no_grad()
def _evaluate(net: SynthEvaluator, heldout, size: int, seed: int) -> dict:
    """Held-out head metrics: clean clips for class/motion, a degraded copy for the rest."""
    videos, centres, labels = heldout
    net.eval()
    rng = np.random.default_rng([seed, 7])
    start = rng.integers(videos.shape[1] - CLIP_FRAMES + 1, size=len(videos))
    frames = start[:, None] + np.arange(CLIP_FRAMES)[None]
    ar = np.arange(len(videos))[:, None]
    clips, cents = videos[ar, frames], centres[ar, frames]
    out = net.heads(net.features(net.preprocess(torch.from_numpy(clips))))
    centre, velocity, _ = _targets(cents, np.zeros(len(clips), int), np.zeros(len(clips)))
    acc = (out["class"].argmax(1).numpy() == labels).mean()
    pos_px = ((out["centre"] - centre) / 4.0 * size).pow(2).sum(-1).mean().sqrt()
    vel_px = ((out["velocity"] - velocity) / 16.0 * size).pow(2).sum(-1).mean().sqrt()
    dclips, dcents, kinds, amounts = _degrade_batch(clips.copy(), cents.copy(), rng, 0.2)
    dout = net.heads(net.features(net.preprocess(torch.from_numpy(dclips))))
    deg_acc = (dout["degradation"].argmax(1).numpy() == kinds).mean()
    rows = np.nonzero(kinds > 0)[0]
    levels = torch.sigmoid(dout["strength"]).numpy()[rows, kinds[rows] - 1]  # (R, 9)
    pred = 0.05 + 0.1 * levels.sum(axis=1)  # expected strength: levels are 0.1 apart
    strength_mae = float(np.abs(pred - amounts[rows]).mean()) if len(rows) else 0.0
    return {"heldout_clips": int(len(videos)), "class_accuracy": float(acc),
            "centre_rmse_px": float(pos_px), "velocity_rmse_px": float(vel_px),
            "degradation_accuracy": float(deg_acc), "strength_mae": strength_mae}


def _bf16_autocast() -> bool:
    """Train under bf16 autocast where oneDNN runs bf16 natively (AVX512/AMX): ~2.5x faster
    on two cores, and as deterministic as float32; elsewhere bf16 would be slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _tqdm_or_plain(progress: bool):
    if not progress:
        return lambda it, desc=None, total=None: it
    from tqdm.auto import tqdm

    return lambda it, desc=None, total=None: tqdm(it, desc=desc, total=total, leave=False)


def train_synth_evaluator(spec: dict, seed: int = 0, progress: bool = True,
                          budget: str | dict = "full") -> tuple[SynthEvaluator, dict]:
    """Train an evaluator for the synthetic dataset described by `spec` (see
    `read_synthetic_spec`): (network in eval mode, report dict of plain values).

    Deterministic for (spec, seed, budget) on one machine with a fixed
    `torch.get_num_threads()`: torch's and numpy's generators are seeded here and the
    global torch RNG state is restored afterwards. `budget`: a key of `BUDGETS`
    ("full" for use, "reduced" for tests, "tiny" for plumbing) or such a dict.
    """
    b = _budget(budget)
    k = int(spec["num_classes"])
    bar = _tqdm_or_plain(progress)
    t0 = time.perf_counter()
    rng = np.random.default_rng([seed, 1])
    pool = _render_set(spec, b["pool_videos"], b["pool_frames"], TRAIN_OFFSET, 0.5, rng, bar,
                       "evaluator: rendering training clips")
    heldout = _render_set(spec, b["heldout_videos"], CLIP_FRAMES + 8, HELDOUT_OFFSET, 1.0, rng,
                          bar, "evaluator: rendering held-out clips")
    t_data = time.perf_counter() - t0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SynthEvaluator(k)
        opt = torch.optim.AdamW(net.parameters(), lr=b["lr"], weight_decay=1e-4)
        steps = int(b["steps"])
        warm = max(1, steps // 20)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (
            1 + math.cos(math.pi * min(s, steps) / steps)))
        bf16 = _bf16_autocast()
        net.train()
        last: dict[str, float] = {}
        it = bar(range(steps), desc="evaluator: training")
        for step in it:
            clips, cents, labels, kinds, amounts = _sample_batch(pool, rng, b["batch_size"], 0.3)
            centre, velocity, strength = _targets(cents, kinds, amounts)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = net.heads(net.features(net.preprocess(torch.from_numpy(clips))))
            out = {name: v.float() for name, v in out.items()}
            losses = _losses(out, torch.from_numpy(labels), torch.from_numpy(kinds), centre,
                             velocity, strength)
            loss = sum(losses.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            last = {name: float(v.detach()) for name, v in losses.items()}
            if progress and hasattr(it, "set_postfix") and step % 10 == 0:
                it.set_postfix(loss=f"{sum(last.values()):.3f}")
    t_train = time.perf_counter() - t0 - t_data
    metrics = _evaluate(net, heldout, int(spec["size"]), seed)
    net.eval()
    state = net.state_dict()
    net.detector_hash = _state_hash(state)
    report = {"budget": b, "seed": int(seed), "steps": steps,
              "clips_seen": steps * int(b["batch_size"]), "threads": torch.get_num_threads(),
              "autocast": "bfloat16" if bf16 else "off",
              "data_seconds": round(t_data, 2), "train_seconds": round(t_train, 2),
              "seconds": round(time.perf_counter() - t0, 2),
              "final_losses": {k_: round(v, 5) for k_, v in last.items()}, **metrics}
    net.report = report
    if metrics["class_accuracy"] < MIN_ACCURACY:
        warnings.warn(f"synthetic-set evaluator reached only "
                      f"{100 * metrics['class_accuracy']:.1f}% held-out class accuracy (wanted "
                      f">= {100 * MIN_ACCURACY:.0f}%); its numbers are less reliable",
                      RuntimeWarning, stacklevel=2)
    return net, report


# --------------------------------------------------------------------------- cache


def _cache_options(spec: dict, seed: int, budget: str | dict) -> dict:
    return {"evaluator": _FORMAT, "version": EVALUATOR_VERSION, "seed": int(seed),
            "budget": _budget(budget), "num_classes": int(spec["num_classes"]),
            "size": int(spec["size"]), "data_seed": int(spec["seed"]),
            "codec": str(spec.get("codec"))}


def _cache_path(data_dir: str | os.PathLike, spec: dict, seed: int, budget: str | dict) -> Path:
    key = options_key(_cache_options(spec, seed, budget))
    return cache_dir(data_dir) / f"synth_evaluator-{key}.pt"


def evaluator_cache_path(data_dir: str | os.PathLike, seed: int = 0,
                         budget: str | dict = "full") -> Path:
    """Where `load_synth_evaluator` keeps the evaluator for this data, seed and budget."""
    return _cache_path(data_dir, read_synthetic_spec(data_dir), seed, budget)


def _save(net: SynthEvaluator, spec: dict, path: Path) -> None:
    blob = {"format": _FORMAT, "version": EVALUATOR_VERSION, "config": net.config(),
            "spec": {k: v for k, v in spec.items()}, "report": net.report,
            "detector_hash": net.detector_hash, "state_dict": net.state_dict()}
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    try:
        torch.save(blob, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class _StaleCache(Exception):
    """A cached evaluator that cannot be used: it is retrained and overwritten."""


def _load(path: Path, device) -> SynthEvaluator:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("format") != _FORMAT or blob.get("version") != EVALUATOR_VERSION:
            raise ValueError(f"format {blob.get('format')} version {blob.get('version')}")
        net = SynthEvaluator(**blob["config"])
        net.load_state_dict(blob["state_dict"])
    except Exception as exc:  # a damaged cache file is retrained, not fatal
        raise _StaleCache(f"{path}: {exc}") from exc
    net.detector_hash = _state_hash(net.state_dict())
    if net.detector_hash != blob.get("detector_hash"):
        raise _StaleCache(f"{path}: weights hash {net.detector_hash} differs from the "
                          f"recorded {blob.get('detector_hash')}")
    net.report = blob.get("report", {})
    return net.to(device).eval()


def load_synth_evaluator(data_dir: str | os.PathLike, device="cpu", seed: int = 0,
                         progress: bool = True, budget: str | dict = "full") -> SynthEvaluator:
    """The evaluator for the synthetic dataset in `data_dir`: cached, else trained and cached.

    Raises CvgError if `data_dir` is not a synthetic dataset. `trained_now` on the
    result says whether this call trained it; `report` holds its training report.
    """
    spec = read_synthetic_spec(data_dir)
    path = _cache_path(data_dir, spec, seed, budget)
    if path.is_file():
        try:
            net = _load(path, device)
            net.trained_now = False
            return net
        except _StaleCache as exc:
            warnings.warn(f"ignoring an unusable cached evaluator ({exc}); retraining",
                          RuntimeWarning, stacklevel=2)
    net, report = train_synth_evaluator(spec, seed=seed, progress=progress, budget=budget)
    _save(net, spec, path)
    print(f"synthetic-set evaluator: {100 * report['class_accuracy']:.1f}% held-out class "
          f"accuracy, degradation type {100 * report['degradation_accuracy']:.1f}%, trained in "
          f"{report['seconds']:.0f} s (cached at {path})")
    net.trained_now = True
    return net.to(device).eval()
