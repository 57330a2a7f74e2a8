"""Fixture makers: every kind of bad (and unusual but good) video file a dataset holds.

Each maker writes a real video with PyAV and then damages it the way files get damaged
in the wild (interrupted download, bad sectors, a text file renamed .mp4, a dangling
link, ...). Plain functions, so a test picks the cases it needs; every file is tiny
(<= 40 frames of 24x32), so a whole mixed folder is written in well under a second.

Frames are uint8 (T, H, W, 3) RGB. In `indexed_frames`, frame i is a flat grey of
level 10 + 6*i, which every codec keeps within +-3, so `frame_ids` reads back which
frames a clip holds.
"""

from __future__ import annotations

import os
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from cvg_fast.data import write_video

H, W = 24, 32  # frame size of every fixture except the odd-sized one


def indexed_frames(n: int, h: int = H, w: int = W) -> np.ndarray:
    """uint8 (n, h, w, 3); frame i is flat grey 10 + 6*i (n <= 40)."""
    levels = 10 + 6 * np.arange(n)
    return np.broadcast_to(levels[:, None, None, None], (n, h, w, 3)).astype(np.uint8).copy()


def frame_ids(clip: np.ndarray) -> list[int]:
    """Inverse of `indexed_frames` on decoded (T, H, W, 3) frames."""
    return [int(round((float(f.mean()) - 10) / 6)) for f in clip]


def noise_frames(n: int, h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    """uint8 (n, h, w, 3) random pixels: every frame is a big packet, so damage lands in
    frame data (not only headers) and no two frames are alike."""
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def smooth_frames(n: int, h: int = H, w: int = W) -> np.ndarray:
    """uint8 (n, h, w, 3) colour gradients moving one pixel per frame: easy on 4:2:0
    chroma, so 8-bit and 10-bit encodes of it agree closely."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty((n, h, w, 3), np.uint8)
    for t in range(n):
        out[t, ..., 0] = 40 + 160 * (xx + t) / (w + n)
        out[t, ..., 1] = 60 + 140 * yy / h
        out[t, ..., 2] = 200 - 120 * (xx + yy) / (w + h)
    return out


def grey_frames(n: int, h: int = H, w: int = W) -> np.ndarray:
    """uint8 (n, h, w, 3) with R = G = B: a horizontal ramp plus the frame's index level."""
    ramp = np.linspace(16, 200, w)[None, None, :] + 6 * np.arange(n)[:, None, None] * 0.5
    grey = np.broadcast_to(ramp, (n, h, w)).clip(0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def write_pyav(path, frames: np.ndarray, codec: str = "libx264", pix_fmt: str = "yuv420p",
               fps: int = 10, gop: int = 5, pts=None, time_base: Fraction | None = None,
               options: dict | None = None, container_options: dict | None = None,
               full_range: bool = False) -> Path:
    """Plain PyAV writer for what `VideoWriter` does not make: short GOPs, any pix_fmt
    (gray, 10-bit), irregular timestamps (VFR), the index at the end of an mp4.
    full_range tags the stream as full-range (JPEG) levels."""
    path = Path(path)
    with av.open(str(path), "w", container_options=container_options or {}) as c:
        s = c.add_stream(codec, rate=fps)
        s.height, s.width = frames.shape[1:3]
        s.pix_fmt = pix_fmt
        s.codec_context.gop_size = gop
        if full_range:
            s.codec_context.color_range = 2  # AVCOL_RANGE_JPEG
        if time_base is not None:
            s.codec_context.time_base = time_base
            s.time_base = time_base
        if codec in ("mpeg4", "mjpeg"):
            s.codec_context.qscale = True
            s.codec_context.global_quality = 2 * 118  # -q:v 2
        if options:
            s.options = options
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            if pts is not None:
                f.pts, f.time_base = int(pts[i]), time_base
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def packet_spans(path) -> list[tuple[int, int, bool]]:
    """(file offset, size, keyframe) of every video packet, in decode order."""
    with av.open(str(path)) as c:
        return [(p.pos, p.size, p.is_keyframe) for p in c.demux(video=0)
                if p.size and p.pos is not None and p.pos >= 0]


# --------------------------------------------------------------------------- damaged


def truncated_mp4(path, frames: int = 40, keep: float = 0.6, faststart: bool = False) -> Path:
    """An mp4 cut at `keep` of its bytes (interrupted copy). faststart=False: the index
    (moov) is at the end and is lost, so nothing is readable; faststart=True: the index
    survives and the frames before the cut still decode (a shorter video)."""
    path = Path(path)
    opts = {"movflags": "+faststart"} if faststart else {}
    write_pyav(path, noise_frames(frames), container_options=opts)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def truncated_avi(path, frames: int = 40, keep: float = 0.6) -> Path:
    """An MPEG-4 AVI cut at `keep` of its bytes: header says `frames`, the index is gone,
    about keep * frames packets are still there."""
    path = Path(path)
    write_video(path, noise_frames(frames), 10, codec="mpeg4")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def corrupt_mp4(path, frames: int = 40, first: int = 10, fill: str = "zeros",
                source: np.ndarray | None = None) -> Path:
    """An H.264 mp4 whose packets from decode position `first` on are overwritten (bad
    sectors): headers, index and the first frames are intact, so probing succeeds;
    decoding a clip that reaches the damage fails ("zeros") or gives garbage ("random")."""
    path = Path(path)
    write_pyav(path, noise_frames(frames) if source is None else source, gop=frames)
    spans = packet_spans(path)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(1)
    for pos, size, _ in spans[first:]:
        # keep each packet's 4-byte NAL length prefix and damage the payload behind it
        a, b = pos + 4, pos + size
        data[a:b] = bytes(b - a) if fill == "zeros" else rng.bytes(b - a)
    path.write_bytes(bytes(data))
    return path


def header_garbage(path, kind: str = "text") -> Path:
    """A file with a video suffix that is not a video: "text" (a renamed README) or
    "noise" (random bytes, e.g. an HTML error page saved as .mp4 is no better)."""
    path = Path(path)
    if kind == "text":
        path.write_text("<html>404 not found</html>\n" * 40)
    else:
        path.write_bytes(np.random.default_rng(3).bytes(4096))
    return path


def zero_length(path) -> Path:
    """An empty file (a download that never started)."""
    path = Path(path)
    path.write_bytes(b"")
    return path


def short_video(path, frames: int = 5) -> Path:
    """A valid video with fewer frames than a clip needs."""
    return write_video(path, indexed_frames(frames), 10)


# --------------------------------------------------------------------------- unusual, good


def vfr_video(path, frames: int = 40, seed: int = 1) -> tuple[Path, list[int]]:
    """Variable frame rate (phone footage): pts steps of 1/60, 1/30 and 1/15 s in a
    1/90000 time base; frame i shows `indexed_frames` level i. Returns (path, pts)."""
    rng = np.random.default_rng(seed)
    steps = rng.choice([1500, 3000, 3000, 6000], frames - 1)
    pts = np.concatenate([[0], np.cumsum(steps)]).astype(int).tolist()
    write_pyav(path, indexed_frames(frames), fps=30, gop=5, pts=pts,
               time_base=Fraction(1, 90000))
    return Path(path), pts


def odd_size_video(path, frames: int = 12, h: int = 47, w: int = 33) -> tuple[Path, np.ndarray]:
    """An odd-sized video as our writer makes it (x264 yuv444p: 4:2:0 needs even sizes).
    Returns (path, the frames written)."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 7, yy * 5, np.full_like(xx, 90)], -1).astype(np.uint8)
    src = np.stack([np.roll(base, t, axis=1) for t in range(frames)])
    return write_video(path, src, 10), src


def gray_video(path, frames: int = 12, codec: str = "ffv1") -> tuple[Path, np.ndarray]:
    """A single-channel `gray` source (ffv1 in mkv: lossless; libx264 in mp4: 4:0:0 High
    profile, lossless). Returns (path, the R = G = B frames written).

    swscale turns RGB into full-range gray (Y = the grey level), so the x264 stream is
    tagged full-range: untagged, every decoder reads 4:0:0 H.264 as limited range and
    stretches the levels (16 -> 0, 200 -> 214), as FFmpeg itself does."""
    src = grey_frames(frames)
    x264 = codec == "libx264"
    path = write_pyav(path, src, codec=codec, pix_fmt="gray",
                      options={"qp": "0"} if x264 else None, full_range=x264)
    return path, src


def ten_bit_pair(folder, frames: int = 12) -> tuple[Path, Path, np.ndarray]:
    """The same frames as x264 yuv420p10le and yuv420p (both lossless in YUV, so they
    differ only by the 8- vs 10-bit colour conversion). Returns (10-bit, 8-bit, frames)."""
    folder = Path(folder)
    src = smooth_frames(frames)
    lossless = {"qp": "0"}
    p10 = write_pyav(folder / "tenbit.mp4", src, pix_fmt="yuv420p10le", options=lossless)
    p8 = write_pyav(folder / "eightbit.mp4", src, pix_fmt="yuv420p", options=lossless)
    return p10, p8, src


# --------------------------------------------------------------------------- unreadable paths
# Tests run as root, and chmod 000 does not stop root: these paths fail for everyone.


def broken_symlink(path) -> Path:
    """A link named like a video whose target is gone (a moved or unmounted dataset)."""
    path = Path(path)
    os.symlink(path.with_name(f".gone_{path.name}"), path)
    return path


def folder_named_like_video(path) -> Path:
    """A directory named x.mp4 (e.g. frames extracted into a folder), holding no video."""
    path = Path(path)
    path.mkdir()
    (path / "frame_0001.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return path


def fifo(path) -> Path:
    """A named pipe with a video suffix: opening it for reading blocks forever."""
    path = Path(path)
    os.mkfifo(path)
    return path


class FifoGuard:
    """Watches named pipes while a test runs: if anything opens one for reading, the
    guard opens and closes its write end, so the reader gets end-of-file instead of
    blocking forever, and `opened` lists it. A test asserts `opened == []`: the code
    under test never tried to read a pipe (and a regression fails instead of hanging)."""

    def __init__(self, *paths):
        self.paths = [str(p) for p in paths]
        self.opened: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            for p in self.paths:
                try:  # succeeds only while a reader has the pipe open
                    fd = os.open(p, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:
                    continue
                os.close(fd)
                self.opened.append(p)

    def __enter__(self) -> "FifoGuard":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------- all together

#: name -> what VideoFolder must do with it for clips of `MIXED_CLIP` frames.
GOOD, BAD = "good", "bad"
MIXED_CLIP = 8


def mixed_folder(root) -> dict[str, str]:
    """A flat folder holding one file of every kind; returns {file name: GOOD | BAD} for
    clips of MIXED_CLIP frames. Corrupt-mid-stream is GOOD at construction (it probes
    fine): it fails only when a clip reaches the damage."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    kinds = {}
    write_video(root / "plain.mp4", indexed_frames(20), 10)
    kinds["plain.mp4"] = GOOD
    truncated_mp4(root / "truncated.mp4")
    kinds["truncated.mp4"] = BAD  # index lost with the tail
    truncated_mp4(root / "truncated_faststart.mp4", faststart=True)
    kinds["truncated_faststart.mp4"] = GOOD  # index first: the frames before the cut remain
    truncated_avi(root / "truncated.avi", frames=12, keep=0.4)
    kinds["truncated.avi"] = BAD  # ~4 of 12 frames left: too short for a clip
    corrupt_mp4(root / "corrupt.mp4")
    kinds["corrupt.mp4"] = GOOD
    header_garbage(root / "garbage.mp4", "text")
    kinds["garbage.mp4"] = BAD
    header_garbage(root / "noise.mkv", "noise")
    kinds["noise.mkv"] = BAD
    zero_length(root / "empty.mp4")
    kinds["empty.mp4"] = BAD
    short_video(root / "short.mp4", MIXED_CLIP - 3)
    kinds["short.mp4"] = BAD
    vfr_video(root / "vfr.mkv")
    kinds["vfr.mkv"] = GOOD
    odd_size_video(root / "odd.mp4")
    kinds["odd.mp4"] = GOOD
    gray_video(root / "gray.mkv")
    kinds["gray.mkv"] = GOOD
    ten_bit_pair(root)
    kinds["tenbit.mp4"] = kinds["eightbit.mp4"] = GOOD
    broken_symlink(root / "link.mp4")
    kinds["link.mp4"] = BAD
    folder_named_like_video(root / "frames.mp4")
    kinds["frames.mp4"] = BAD
    fifo(root / "pipe.mp4")
    kinds["pipe.mp4"] = BAD
    return kinds
