"""The built-in synthetic dataset: moving coloured shapes, written as real encoded videos.

Why real files: the synthetic data then goes through exactly the path real footage
does (`VideoFolder` -> PyAV decode -> resize/crop), so a smoke run exercises the
whole input pipeline, and the files can be opened in any player.

Class k is a fixed (colour, shape, motion) triple: the first four are
red circle left-right, green square up-down, blue triangle diagonal, yellow cross
on a circle; later classes cycle colours (8), shapes (6) and motions (5) with
different periods, so all 120 possible classes are distinct triples. Each video
draws its own start position, speed (~size/24 .. size/10 px per frame), direction
and a dark, softly textured background from numpy's generator seeded with
(seed, class, video): a video does not change when others are added.
Shapes are ~size/4 across, always fully on screen (they bounce off the walls),
drawn anti-aliased (4x4 supersampling).

`render_synthetic_clip` also returns the ground truth (the shape's centre per frame,
(T, 2) px), which the synthetic-set evaluator (`cvg_fast.metrics.synth_evaluator`)
learns to read off. A written dataset records how it was made in a hidden manifest,
root/.synthetic.json, so that evaluator can render more videos of the same classes.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

import numpy as np

from cvg_fast.data.video_io import VIDEO_EXTENSIONS, VideoWriter, probe_video
from cvg_fast.errors import CvgError

__all__ = [
    "SPEC_FILE",
    "read_synthetic_spec",
    "render_synthetic_clip",
    "render_synthetic_video",
    "synthetic_class_names",
    "write_synthetic_dataset",
]

COLOURS = (
    ("red", (230, 40, 40)),
    ("green", (40, 205, 60)),
    ("blue", (50, 95, 245)),
    ("yellow", (240, 220, 40)),
    ("magenta", (225, 50, 225)),
    ("cyan", (40, 220, 225)),
    ("orange", (245, 140, 30)),
    ("white", (235, 235, 235)),
)
SHAPES = ("circle", "square", "triangle", "cross", "diamond", "ring")
MOTIONS = ("right", "down", "diag", "orbit", "zigzag")
MAX_CLASSES = 120  # lcm(8, 6, 5): beyond it (colour, shape, motion) triples repeat

SPEC_FILE = ".synthetic.json"  # the manifest in a dataset's root; hidden: scans skip it
SPEC_FORMAT = "cvg_fast.synthetic"
SPEC_VERSION = 1

_SUPERSAMPLE = 4
_EXT = {"libx264": ".mp4", "libx265": ".mp4", "mpeg4": ".avi", "mjpeg": ".avi", "libvpx": ".webm",
        "libvpx-vp9": ".webm", "ffv1": ".mkv"}


# x264's SIMD paths give different bytes on ~1 in 5 runs of the same 32 px input (measured
# here: 12 of 48 videos encoded three times differed; 0 of 48 with asm=0, for +30% encode
# time at this size). Identical data bytes make a seeded training run, and so the demo's
# metrics, reproducible.
# preset pinned: the set's bytes define every demo and metric number, so they must not follow
# VideoWriter's default (veryfast since generation's encoder moved to it)
_DETERMINISTIC = {"libx264": {"x264-params": "asm=0", "preset": "medium"}}


# decoder name (what `probe_video` reports) -> the encoder `write_synthetic_dataset` took
_ENCODER_OF = {"h264": "libx264", "hevc": "libx265", "vp8": "libvpx", "vp9": "libvpx-vp9"}


def _class_spec(k: int) -> tuple[str, tuple[int, int, int], str, str]:
    colour, rgb = COLOURS[k % len(COLOURS)]
    return colour, rgb, SHAPES[k % len(SHAPES)], MOTIONS[k % len(MOTIONS)]


def synthetic_class_names(num_classes: int) -> list[str]:
    """Folder names, e.g. '00_red_circle_right'; sorted order == class index."""
    width = max(2, len(str(num_classes - 1)))
    names = []
    for k in range(num_classes):
        colour, _, shape, motion = _class_spec(k)
        names.append(f"{k:0{width}d}_{colour}_{shape}_{motion}")
    return names


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Inside-test on offsets from the centre (pixel units); every shape fits in radius r."""
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.78 * r
    if shape == "triangle":  # apex up, inscribed in the circle of radius r
        return (dy <= 0.5 * r) & (np.abs(dx) <= (dy + r) / np.sqrt(3.0))
    if shape == "cross":
        arm = 0.32 * r
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    if shape == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= r * r) & (d2 >= (0.5 * r) ** 2)
    raise ValueError(f"unknown shape {shape!r}")


def _bounce(
    p0: float, speed: float, forward: bool, lo: float, hi: float, frames: int
) -> np.ndarray:
    """Positions of a point going back and forth inside [lo, hi], turning around before a wall.

    It moves `speed` px per frame one way and 2 x `speed` the other, so no two frames
    1 or 2 apart ever share a position (a symmetric reversal would make frames t-1
    and t+1 coincide, and every-2nd-frame subsampling would show a pause).
    Needs hi - lo >= 3 x speed.
    """
    fast_first = forward  # which direction is the fast one, fixed per video
    out = np.empty(frames)
    p, d = p0, 1.0 if forward else -1.0
    for t in range(frames):
        out[t] = p
        step = speed * (2.0 if (d > 0) == fast_first else 1.0)
        if not lo <= p + d * step <= hi:
            d = -d
            step = speed * (2.0 if (d > 0) == fast_first else 1.0)
        p += d * step
    return out


def _trajectory(motion: str, rng: np.random.Generator, frames: int, size: int, r: float):
    """Centre (x, y) per frame, each (frames,), keeping the shape 1 px off every edge.

    Speed: back-and-forth motions go size/24..size/20 px per frame one way and twice
    that the other (see `_bounce`); the orbit goes size/20..size/12.
    """
    lo, hi = r + 1.0, size - r - 1.0
    slow = rng.uniform(size / 24, size / 20)
    coin = lambda: bool(rng.integers(2))  # noqa: E731
    x0, y0 = rng.uniform(lo, hi), rng.uniform(lo, hi)
    if motion == "right":
        return _bounce(x0, slow, coin(), lo, hi, frames), np.full(frames, y0)
    if motion == "down":
        return np.full(frames, x0), _bounce(y0, slow, coin(), lo, hi, frames)
    if motion == "diag":
        angle = rng.uniform(np.pi / 6, np.pi / 3)
        return (_bounce(x0, slow * np.cos(angle) * np.sqrt(2), coin(), lo, hi, frames),
                _bounce(y0, slow * np.sin(angle) * np.sqrt(2), coin(), lo, hi, frames))
    if motion == "orbit":
        speed = rng.uniform(size / 20, size / 12)
        c = size / 2
        radius = rng.uniform(0.55, 1.0) * (hi - c)
        omega = (1 if coin() else -1) * speed / radius
        phase = rng.uniform(0, 2 * np.pi) + omega * np.arange(frames)
        return c + radius * np.cos(phase), c + radius * np.sin(phase)
    if motion == "zigzag":
        amp = rng.uniform(0.3, 0.5) * (hi - lo) / 2
        yc = rng.uniform(lo + amp, hi - amp)
        period = rng.uniform(6, 10)
        t = np.arange(frames)
        y = yc + amp * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
        return _bounce(x0, slow, coin(), lo, hi, frames), y
    raise ValueError(f"unknown motion {motion!r}")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Dark tinted base plus two low-frequency waves: float (size, size, 3) in ~[5, 70]."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = rng.uniform(12, 40, size=3)
    tex = np.zeros((size, size))
    for _ in range(2):
        fx, fy = rng.uniform(0.5, 2.0, size=2)
        tex += np.sin(2 * np.pi * (fx * xx + fy * yy) + rng.uniform(0, 2 * np.pi))
    amp = rng.uniform(4, 10)
    return base[None, None, :] + amp * tex[..., None] * rng.uniform(0.6, 1.0, size=3)[None, None, :]


def render_synthetic_video(
    class_index: int, video_index: int, frames: int, size: int, seed: int = 0
) -> np.ndarray:
    """One video of class `class_index`: uint8 (frames, size, size, 3). Deterministic."""
    return render_synthetic_clip(class_index, video_index, frames, size, seed)[0]


def render_synthetic_clip(
    class_index: int, video_index: int, frames: int, size: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """One video and its ground truth: (uint8 (frames, size, size, 3), float64 (frames, 2)).

    The second array is the shape's centre (x, y) in pixels per frame, x to the right
    and y down, pixel (i, j) covering [j, j+1) x [i, i+1); the velocity is its finite
    difference. The video is exactly `render_synthetic_video`'s.
    """
    _, rgb, shape, motion = _class_spec(class_index)
    rng = np.random.default_rng([seed, class_index, video_index])
    r = size / 8.0  # diameter ~ size/4
    cx, cy = _trajectory(motion, rng, frames, size, r)
    bg = _background(rng, size)
    # Coverage by 4x4 supersampling, evaluated only in the shape's bounding box.
    s = _SUPERSAMPLE
    alpha = np.zeros((frames, size, size, 1))
    for t in range(frames):
        x0, x1 = max(0, int(cx[t] - r) - 1), min(size, int(cx[t] + r) + 2)
        y0, y1 = max(0, int(cy[t] - r) - 1), min(size, int(cy[t] + r) + 2)
        dx = (np.arange(x0 * s, x1 * s) + 0.5) / s - cx[t]  # sub-pixel centres, pixel units
        dy = (np.arange(y0 * s, y1 * s) + 0.5) / s - cy[t]
        mask = _shape_mask(shape, dx[None, :], dy[:, None], r)
        alpha[t, y0:y1, x0:x1, 0] = mask.reshape(y1 - y0, s, x1 - x0, s).mean(axis=(1, 3))
    # Lit from above: the shape's top is 15% brighter than its bottom, so it is not a flat patch.
    py = np.arange(size) + 0.5
    rel = np.clip((py[None, :] - cy[:, None]) / r, -1.0, 1.0)  # (T, size): -1 top .. 1 bottom
    shade = (1.0 - 0.075 * (rel + 1.0))[:, :, None, None]  # (T, size, 1, 1)
    colour = np.asarray(rgb, np.float64)[None, None, None, :] * shade
    video = bg[None] * (1 - alpha) + colour * alpha
    centres = np.stack([cx, cy], axis=1).astype(np.float64)
    return np.clip(np.rint(video), 0, 255).astype(np.uint8), centres


def write_synthetic_dataset(
    root: str | os.PathLike,
    num_classes: int = 4,
    videos_per_class: int = 16,
    frames: int = 32,
    size: int = 32,
    fps: float = 8,
    seed: int = 0,
    codec: str = "libx264",
    progress: bool = True,
) -> Path:
    """Write root/<class>/<video> real encoded videos and root/.synthetic.json; returns root.

    The dataset is built in a hidden sibling folder and renamed to `root` at the end,
    so an interrupted run leaves no half-made dataset under `root`. `root` must not
    exist or be an empty folder. Encoding uses one thread and, for x264, no assembly
    (`_DETERMINISTIC`), so the bytes are the same on every run for a given seed. The
    manifest (`SPEC_FILE`, read back by
    `read_synthetic_spec`) is hidden, so dataset scans skip it like any dot-file.
    """
    if not 1 <= num_classes <= MAX_CLASSES:
        raise CvgError(
            f"num_classes must be 1..{MAX_CLASSES} for the synthetic dataset (got {num_classes})"
        )
    if videos_per_class < 1 or frames < 2:
        raise CvgError(
            f"need videos_per_class >= 1 and frames >= 2 (got {videos_per_class}, {frames})"
        )
    if size < 8:
        raise CvgError(f"synthetic videos need size >= 8 px (got {size})")
    if seed < 0:
        raise CvgError(f"seed must be >= 0 (got {seed})")
    root = Path(root).expanduser().absolute()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise CvgError(
            f"{root} already exists and is not an empty folder; choose a new folder or delete it"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    ext = _EXT.get(codec, ".mkv")
    tmp = root.parent / f".{root.name}.{secrets.token_hex(4)}.partial"
    names = synthetic_class_names(num_classes)
    from tqdm.auto import tqdm

    total = num_classes * videos_per_class
    try:
        with tqdm(total=total, desc=f"writing synthetic videos to {root.name}", unit="video",
                  disable=not progress) as bar:
            for k, name in enumerate(names):
                folder = tmp / name
                folder.mkdir(parents=True)
                for v in range(videos_per_class):
                    video = render_synthetic_video(k, v, frames, size, seed)
                    path = folder / f"{name}_{v:04d}{ext}"
                    with VideoWriter(path, fps, codec, threads=1,
                                     options=_DETERMINISTIC.get(codec)) as writer:
                        writer.write(video)
                    bar.update(1)
        spec = {"format": SPEC_FORMAT, "version": SPEC_VERSION, "num_classes": num_classes,
                "videos_per_class": videos_per_class, "frames": frames, "size": size,
                "fps": fps, "seed": seed, "codec": codec}
        (tmp / SPEC_FILE).write_text(json.dumps(spec, indent=1) + "\n")
        if root.exists():
            root.rmdir()  # empty (checked above)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _not_synthetic(root: Path, why: str) -> CvgError:
    return CvgError(
        f"{root} is not a dataset written by `cvg data synth` ({why}): the synthetic-set "
        f"metrics need one; for other data use the I3D metrics (--i3d PATH)"
    )


def read_synthetic_spec(root: str | os.PathLike) -> dict:
    """The parameters a synthetic dataset was written with, as a dict.

    Keys: format, version, num_classes, videos_per_class, frames, size, fps, seed, codec,
    inferred. A dataset written by this version carries them in `root/SPEC_FILE`
    (inferred=False). An older one has no manifest: its class folders must be named
    exactly `synthetic_class_names(n)`; size, frames, fps and codec come from probing
    one video, videos_per_class from counting the first folder's videos, and seed 0
    (the default) is assumed: inferred=True says so. Anything else raises CvgError.
    """
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise _not_synthetic(root, "the folder does not exist")
    manifest = root / SPEC_FILE
    if manifest.is_file():
        try:
            spec = json.loads(manifest.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CvgError(f"{manifest}: unreadable manifest ({exc}); delete the file to infer "
                           f"the spec from the videos, or rewrite the dataset") from None
        keys = ("num_classes", "videos_per_class", "frames", "size", "fps", "seed", "codec")
        if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT or any(
                k not in spec for k in keys):
            raise CvgError(f"{manifest}: not a {SPEC_FORMAT} manifest (needs format "
                           f"{SPEC_FORMAT!r} and {', '.join(keys)}); delete it or rewrite the "
                           f"dataset with `cvg data synth`")
        if spec.get("version", 0) > SPEC_VERSION:
            raise CvgError(f"{manifest}: manifest version {spec['version']} is newer than this "
                           f"cvg_fast reads ({SPEC_VERSION}); upgrade cvg_fast")
        return {**spec, "inferred": False}
    folders = sorted(e.name for e in root.iterdir() if e.is_dir() and not e.name.startswith("."))
    if not folders or not 1 <= len(folders) <= MAX_CLASSES:
        raise _not_synthetic(root, f"no {SPEC_FILE} and {len(folders)} class folders")
    if folders != synthetic_class_names(len(folders)):
        raise _not_synthetic(root, f"no {SPEC_FILE} and its class folders are not named like "
                                   f"00_red_circle_right, e.g. {folders[0]!r}")
    videos = sorted(e for e in (root / folders[0]).iterdir()
                    if not e.name.startswith(".") and e.suffix.lower() in VIDEO_EXTENSIONS)
    if not videos:
        raise _not_synthetic(root, f"no {SPEC_FILE} and no videos in {folders[0]}/")
    info = probe_video(videos[0])
    if info.width != info.height:
        raise _not_synthetic(root, f"no {SPEC_FILE} and {videos[0].name} is "
                                   f"{info.width}x{info.height}, not square")
    return {"format": SPEC_FORMAT, "version": SPEC_VERSION, "num_classes": len(folders),
            "videos_per_class": len(videos), "frames": info.frames, "size": info.width,
            "fps": info.fps, "seed": 0, "codec": _ENCODER_OF.get(info.codec, info.codec),
            "inferred": True}


# ------------------------------------------- the demo's and the ablation's data sets
def demo_data_spec(cfg, num_videos: int) -> dict:
    """The demo's synthetic set for a CascadeConfig `cfg`: 4 classes, `num_videos` videos in
    all, each 4x the top level's length (so FVD at 4x the training length has real clips)."""
    top = cfg.levels[-1]
    return dict(num_classes=4, videos_per_class=num_videos // 4, frames=top.frames * 4,
                size=top.size, fps=cfg.fps)


def ensure_synthetic_set(path: Path, seed: int, spec: dict, what: str,
                         needed_by: str = "this demo", progress: bool = True) -> None:
    """Write the synthetic set `spec` at `path`, or reuse it if it has exactly this spec."""
    if path.is_dir() and any(path.iterdir()):
        have = read_synthetic_spec(path)
        keys = ("num_classes", "videos_per_class", "frames", "size", "seed")
        if any(have.get(k) != v for k, v in (spec | {"seed": seed}).items() if k in keys):
            raise CvgError(f"{path} holds another synthetic set ({have.get('frames')} frames, "
                           f"{have.get('videos_per_class')} videos per class, seed "
                           f"{have.get('seed')}) than {needed_by} needs: delete it or use --out")
        print(f"  reusing {what} in {path}")
        return
    write_synthetic_dataset(path, seed=seed, progress=progress, **spec)
