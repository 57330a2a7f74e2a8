"""Primitive video I/O on PyAV (FFmpeg): probe, read a clip, write a video, save a frame grid.

Frames cross this module as uint8 RGB numpy arrays, channels last: one frame is
(H, W, 3), a clip is (T, H, W, 3). Conversion to the model layout
(N, T, C, H, W) float in [-1, 1] happens in `video_folder.py`, nowhere here.

Frame i is the i-th frame the decoder outputs (presentation order) from the start of
the stream, whatever the container, codec or frame rate (constant or variable);
every read path below (seek or decode from the start) returns exactly those frames.

Colour conversion and resizing use swscale through one reused `VideoReformatter`
per clip (area averaging when shrinking, bilinear when enlarging): one C call per
frame that honours the frame's colour matrix and range (BT.601/709, limited/full
"yuvj", 10-bit, grayscale); ~0.16 ms for 320x240 -> 171x128, ~3x faster than
`to_ndarray` + PIL resize.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from cvg_fast.errors import CvgError

__all__ = [
    "VideoInfo",
    "probe_video",
    "read_clip",
    "read_frames",
    "VideoWriter",
    "write_video",
    "save_frame_grid_png",
    "VIDEO_EXTENSIONS",
]

#: File name suffixes (lower case) treated as videos when scanning folders.
VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".m2v",
        ".ts", ".mts", ".m2ts", ".flv", ".wmv", ".asf", ".3gp", ".3g2", ".ogv", ".vob",
        ".dv", ".mxf", ".y4m", ".divx", ".xvid",
    }
)

# Errors PyAV/FFmpeg raise for bad files. PyAV's own exceptions derive from
# FFmpegError (many also from ValueError/OSError); EOFError covers truncation.
_AV_ERRORS = (av.error.FFmpegError, OSError, EOFError, ValueError)

# Containers whose index lists every packet (so it gives an exact frame count and
# reveals a truncated file); Matroska/WebM cues list keyframes only.
_PER_PACKET_INDEX_FORMATS = frozenset({"mov", "mp4", "avi"})

# What to do about a bad file, appended to every error that names one.
BAD_VIDEO_HINT = "remove it or pass --skip-bad-videos (skip_bad=True)"

# Seek only when the clip starts at least this far in: before that, decoding from
# the start costs about what a seek + keyframe decode does.
_SEEK_MIN_START = 8


@dataclass(frozen=True)
class VideoInfo:
    """What `probe_video` learned about one file.

    `width`/`height` are the displayed size: after the container's rotation
    (phone footage) and sample aspect ratio (anamorphic SD) are applied.
    `frames` is the number of decodable frames as far as the headers/index/packets
    tell; `read_clip` raises if the decoder later yields fewer.
    """

    path: str
    frames: int
    fps: float
    width: int
    height: int
    codec: str
    rotation: int = 0  # counter-clockwise degrees the player applies, multiple of 90


# --------------------------------------------------------------------------- helpers


def _reason(exc: BaseException) -> str:
    """A short, one-line reason for a PyAV/OS error, without the path repeated."""
    msg = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(msg).split())


def _open_input(path: str):
    # metadata_errors: a mis-encoded title tag must not make a good video unreadable.
    return av.open(path, mode="r", metadata_errors="ignore")


def _video_stream(container, path: str):
    """The main video stream (not cover art), or CvgError."""
    video = [s for s in container.streams.video]
    if not video:
        raise CvgError(f"{path}: not a readable video (no video stream); {BAD_VIDEO_HINT}")
    try:
        stream = container.streams.best("video")
    except Exception:  # pragma: no cover - best() exists in every supported PyAV
        stream = None
    return stream if stream is not None else video[0]


# above this a "frame rate" is a time base read as one (raw DV reports its 1/60000 clock
# as an average rate of 60000 fps; its real 25 fps is the guessed and base rate)
_MAX_FPS = 1000


def _stream_fps(stream) -> Fraction | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate,
                 stream.codec_context.framerate):
        if rate is not None and 0 < rate <= _MAX_FPS:
            return Fraction(rate)
    return None


def _sample_aspect(stream) -> Fraction:
    """Pixel aspect ratio (container value wins over codec value, as in FFmpeg)."""
    candidates = (getattr(stream, "sample_aspect_ratio", None),
                  stream.codec_context.sample_aspect_ratio)
    for sar in candidates:
        if sar is not None and sar.numerator > 0 and sar.denominator > 0:
            sar = Fraction(sar)
            # Ignore absurd values from broken headers.
            if Fraction(1, 8) <= sar <= 8:
                return sar
    return Fraction(1)


def _rotation_quarters(frame) -> int:
    """Counter-clockwise quarter turns from the frame's display matrix (0..3)."""
    try:
        rot = frame.rotation
    except Exception:  # pragma: no cover - very old PyAV
        return 0
    return int(round(rot / 90.0)) % 4


def _cut_off(packet, file_size: int) -> bool:
    """A packet the file ends inside (interrupted download/copy): FFmpeg flags it corrupt.
    Skipping it lets every complete frame before it decode (and the decoder flush)."""
    if not packet.is_corrupt or packet.pos is None:
        return False
    return packet.pos + packet.size >= file_size


def _frames(container, stream, file_size: int):
    """Decoded frames of `stream` from the current position, like `container.decode`,
    minus a trailing packet cut off by truncation. The final empty packet flushes."""
    for packet in container.demux(stream):
        if packet.size and _cut_off(packet, file_size):
            continue
        yield from stream.decode(packet)


def _count_packets(container, stream, file_size: int, decode_first: bool):
    """Count the stream's packets by demuxing (no decode); optionally decode the first frame.

    Returns (count, first_frame or None). A demux error (damaged tail) ends the count
    there: those frames are the ones a reader can reach.
    """
    count, first = 0, None
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or packet.is_discard or _cut_off(packet, file_size):
                continue
            count += 1
            if decode_first and first is None:
                try:
                    frames = stream.decode(packet)
                except av.error.FFmpegError:
                    frames = []
                if frames:
                    first = frames[0]
    except _AV_ERRORS:
        pass
    if decode_first and first is None and count:
        try:
            frames = stream.decode(None)
            first = frames[0] if frames else None
        except av.error.FFmpegError:
            pass
    return count, first


def _has_per_packet_index(container) -> bool:
    return not _PER_PACKET_INDEX_FORMATS.isdisjoint(container.format.name.split(","))


def _index_frame_count(container, stream, path: str) -> int | None:
    """Exact frame count from a per-packet index (mp4/mov/avi), or None if unusable.

    None when the format has no per-packet index, the index is empty (AVI without
    idx1, fragmented mp4), disagrees with the header, or points past the end of the
    file (download cut short): the caller then counts packets.
    """
    if not _has_per_packet_index(container):
        return None
    entries = stream.index_entries
    n = len(entries)
    if n == 0 or (stream.frames > 0 and n != stream.frames):
        return None
    kept, end = 0, 0
    for e in entries:
        if not e.is_discard:
            kept += 1
        end = max(end, e.pos + e.size)
    if end > os.path.getsize(path):
        return None
    return kept


def _frame_count(container, stream, path: str):
    """(frames, first decoded frame or None): see `probe_video` for the order of sources."""
    per_packet_index = _has_per_packet_index(container)
    frames = _index_frame_count(container, stream, path)
    if frames is not None:
        return frames, None
    if stream.frames > 0 and not per_packet_index:
        return stream.frames, None
    # No trustworthy count (mkv/webm, AVI without index, truncated mp4): count
    # packets, decoding the first frame on the way.
    frames, first = _count_packets(container, stream, os.path.getsize(path), decode_first=True)
    if frames == 0:
        frames = _estimate_from_duration(container, stream)
    return frames, first


def _estimate_from_duration(container, stream) -> int:
    fps = _stream_fps(stream)
    if fps is None:
        return 0
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        seconds = stream.duration * stream.time_base
    elif container.duration is not None and container.duration > 0:
        seconds = Fraction(container.duration, av.time_base)
    else:
        return 0
    return int(seconds * fps)  # floor: an estimate must not promise frames that are not there


# --------------------------------------------------------------------------- probe


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Open `path`, count its frames and decode the first one.

    Frame count, cheapest reliable source first: the container's per-packet index
    (mp4/mov/avi; also catches files cut short), the header's frame count, else
    counting packets by demuxing (mkv/webm have no count; no decoding, ~ms per file).
    Decoding the first frame catches garbage behind a valid-looking header.
    Raises CvgError("<path>: not a readable video (<reason>)...") for a bad file.
    """
    path = os.fspath(path)
    try:
        with _open_input(path) as container:
            stream = _video_stream(container, path)
            frames, first = _frame_count(container, stream, path)
            if first is None:
                for frame in _frames(container, stream, os.path.getsize(path)):
                    first = frame
                    break
            if first is None:
                raise CvgError(
                    f"{path}: not a readable video (no decodable frame); {BAD_VIDEO_HINT}"
                )
            fps = _stream_fps(stream)
            sar = _sample_aspect(stream)
            quarters = _rotation_quarters(first)
            width = max(1, int(round(first.width * sar)))
            height = first.height
            if quarters % 2:
                width, height = height, width
            return VideoInfo(
                path=path,
                frames=int(frames),
                fps=float(fps) if fps is not None else 0.0,
                width=width,
                height=height,
                codec=stream.codec_context.name,
                rotation=90 * quarters,
            )
    except CvgError:
        raise
    except _AV_ERRORS as exc:
        raise CvgError(
            f"{path}: not a readable video ({_reason(exc)}); {BAD_VIDEO_HINT}"
        ) from None


# --------------------------------------------------------------------------- read


class _FrameConverter:
    """Decoded frame -> uint8 (size, size, 3): shorter side to `size`, centre crop.

    Geometry (rotation, pixel aspect) is fixed by the first frame; later frames with
    a different coded size (resolution switch mid-stream) are scaled to the same output.
    """

    def __init__(self, stream, size: int | None):
        self.size = size
        self.sar = _sample_aspect(stream)
        self.quarters: int | None = None
        self.out_hw: tuple[int, int] | None = None  # size=None: the first frame's (H, W), kept
        # One scaler for the whole clip, single-threaded: a fresh SwsContext per frame
        # (what frame.reformat does) with auto threads costs ~10x the conversion itself.
        self._sws = VideoReformatter()

    def __call__(self, frame) -> np.ndarray:
        if self.quarters is None:
            self.quarters = _rotation_quarters(frame)
        w, h = frame.width, frame.height
        disp_w = w * float(self.sar)  # displayed width before rotation
        if self.size is None:
            if self.out_hw is None:
                self.out_hw = (h, max(1, int(round(disp_w))))
            th, tw = self.out_hw
        else:
            s = self.size
            if disp_w <= h:
                tw, th = s, max(s, int(round(h * s / disp_w)))
            else:
                th, tw = s, max(s, int(round(disp_w * s / h)))
        if (tw, th) == (w, h) and frame.format.name == "rgb24":
            arr = frame.to_ndarray()
        else:
            shrink = tw < w or th < h
            arr = self._sws.reformat(
                frame, width=tw, height=th, format="rgb24",
                interpolation="AREA" if shrink else "BILINEAR", threads=1,
            ).to_ndarray()
        if self.quarters:
            arr = np.rot90(arr, self.quarters)
        if self.size is not None:
            y0 = (arr.shape[0] - self.size) // 2
            x0 = (arr.shape[1] - self.size) // 2
            arr = arr[y0 : y0 + self.size, x0 : x0 + self.size]
        return np.ascontiguousarray(arr)


def _is_cfr(stream) -> bool:
    """True when timestamps sit on a constant-rate grid (then pts -> index is arithmetic).

    FFmpeg's r_frame_rate ("base_rate", the rate all timestamps can be expressed in)
    equals the average rate for constant-rate files; phone/screen recordings with
    variable rate differ. A header count that disagrees with duration x rate also
    means gaps in the timestamps.
    """
    avg, base = stream.average_rate, stream.base_rate
    if avg is None or base is None or avg <= 0 or base <= 0:
        return False
    if abs(float(base) / float(avg) - 1.0) > 1e-3:
        return False
    if stream.frames > 0 and stream.duration and stream.time_base:
        expected = float(stream.duration * stream.time_base * avg)
        if abs(expected - stream.frames) > 1.5:
            return False
    return True


def _packet_pts_table(container, stream, file_size: int) -> list[int] | None:
    """Presentation timestamps of every packet, sorted: entry i is frame i's pts.

    Demux only (no decode). None when some packet lacks a pts or two share one.
    """
    pts = []
    for packet in container.demux(stream):
        if packet.size == 0 or packet.is_discard or _cut_off(packet, file_size):
            continue
        if packet.pts is None:
            return None
        pts.append(packet.pts)
    pts.sort()
    if len(set(pts)) != len(pts):
        return None
    return pts


def _read_by_seeking(
    container, stream, wanted: Sequence[int], convert, file_size: int
) -> list[np.ndarray] | None:
    """Seek to the keyframe before `wanted[0]`, decode forward, pick frames by pts.

    Frames are located by pts: arithmetically on a constant-rate grid, else through a
    table of every packet's pts (demuxed, not decoded; variable frame rate). Returns
    None whenever the result could be wrong (no/duplicate timestamps, seek landed on a
    non-keyframe, a gap in the decoded indices, early end of stream): the caller then
    decodes from the start, which is always exact.
    """
    tb = stream.time_base
    t0 = stream.start_time
    if tb is None or tb <= 0 or t0 is None:
        return None
    if _is_cfr(stream):
        frame_ticks = 1 / (Fraction(stream.average_rate) * tb)  # pts ticks per frame

        def index_of(pts: int) -> int | None:
            return int(round((pts - t0) / frame_ticks))

        def target_of(i: int) -> int:
            # A quarter frame of slack: millisecond-rounded (mkv) pts still land at or before it.
            return t0 + int((i + Fraction(1, 4)) * frame_ticks)

        frames = _seek_and_decode(
            container, stream, wanted, convert, index_of, target_of, file_size
        )
        if frames is not None:
            return frames
        # Timestamps off the grid (variable rate the headers did not reveal): use the table.
        container.seek(t0, backward=True, any_frame=False, stream=stream)
    table = _packet_pts_table(container, stream, file_size)
    if table is None or len(table) <= wanted[-1]:
        return None
    rank = {p: i for i, p in enumerate(table)}
    return _seek_and_decode(
        container, stream, wanted, convert, rank.get, table.__getitem__, file_size
    )


def _seek_and_decode(
    container,
    stream,
    wanted: Sequence[int],
    convert,
    index_of: Callable[[int], int | None],
    target_of: Callable[[int], int],
    file_size: int,
) -> list[np.ndarray] | None:
    """One strategy of `_read_by_seeking`. A seek that lands after the target (mp4
    seeks by decode time, so B-frame delay can overshoot; MPEG-TS lands on the next
    keyframe) is retried 8, 32, 128, ... frames further back; from frame 0 it gives up."""
    start, last = wanted[0], wanted[-1]
    t0 = stream.start_time
    want = set(wanted)
    back = 0
    while True:
        first = max(0, start - back)
        target = max(int(target_of(first)), t0)
        container.seek(target, backward=True, any_frame=False, stream=stream)
        out: dict[int, np.ndarray] = {}
        prev = None
        late = False
        for frame in _frames(container, stream, file_size):
            if frame.pts is None:
                return None
            i = index_of(frame.pts)
            if i is None:
                return None
            if prev is None:
                if i > start:
                    late = True
                    break
                if not frame.key_frame:
                    return None
            elif i != prev + 1:
                return None
            prev = i
            if i in want:
                out[i] = convert(frame)
            if i >= last:
                break
        if late or prev is None:  # landed after the target, or past the last keyframe
            if first == 0:
                return None
            back = max(8, 4 * back)
            continue
        if len(out) != len(wanted):
            return None
        return [out[i] for i in wanted]


def _short_error(path: str, decoded: int, last: int) -> CvgError:
    try:
        reported = probe_video(path).frames
    except CvgError:
        reported = None
    if reported is not None and decoded < reported:
        return CvgError(
            f"{path}: only {decoded} frames could be decoded but the file reports {reported} "
            f"(clip needs frame {last}); it is damaged or cut short: re-encode or remove it, "
            "or pass --skip-bad-videos"
        )
    return CvgError(
        f"{path}: clip needs frame {last} but the video has only {decoded} frames; "
        "lower --clip-frames/--frame-stride or pass --skip-bad-videos"
    )


def _read_sequential(path: str, wanted: Sequence[int], size: int | None) -> list[np.ndarray]:
    """Decode from the first frame, counting frames: exact for any timestamps."""
    want = set(wanted)
    last = wanted[-1]
    out: list[np.ndarray] = []
    decoded = 0
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        convert = _FrameConverter(stream, size)
        for i, frame in enumerate(_frames(container, stream, os.path.getsize(path))):
            decoded = i + 1
            if i in want:
                out.append(convert(frame))
            if i >= last:
                break
    if len(out) < len(wanted):
        raise _short_error(path, decoded, last)
    return out


def read_clip(
    path: str | os.PathLike,
    start: int,
    num_frames: int,
    stride: int = 1,
    size: int | None = None,
) -> np.ndarray:
    """Frames start, start+stride, ..., as uint8 (num_frames, size, size, 3).

    Each frame is resized (swscale; area when shrinking) so its shorter displayed side
    is `size`, keeping aspect (rotation and pixel aspect applied), then centre-cropped
    to size x size. size=None keeps the displayed size: (num_frames, H, W, 3).

    Long videos: seeks to the keyframe before `start` and decodes forward, locating
    frames by pts (arithmetic for constant rate; a demuxed pts table for variable
    rate); falls back to decoding from the start when timestamps are missing or
    inconsistent (old AVI/MPEG files), so the frames returned never depend on the path.
    Raises CvgError naming the file when fewer frames decode than needed or when
    FFmpeg reports damaged data.
    """
    if start < 0 or num_frames < 1 or stride < 1 or (size is not None and size < 1):
        raise ValueError(
            f"read_clip: need start >= 0, num_frames >= 1, stride >= 1, size >= 1 "
            f"(got start={start}, num_frames={num_frames}, stride={stride}, size={size})"
        )
    return read_frames(path, [start + k * stride for k in range(num_frames)], size)


def read_frames(path: str | os.PathLike, indices: Sequence[int], size: int | None = None
                ) -> np.ndarray:
    """Frames at `indices` (strictly increasing, >= 0) as uint8 (len(indices), size, size, 3),
    resized and cropped as `read_clip` does, which this generalises.

    Why: a training level uses only some frames of a clip (level 1 every K-th, an
    upscaling level one window); only those are converted and resized, and a long
    video is entered at the keyframe before the first of them.
    """
    path = os.fspath(path)
    wanted = [int(i) for i in indices]
    if not wanted or wanted[0] < 0 or any(b <= a for a, b in zip(wanted, wanted[1:])):
        raise ValueError(f"read_frames: indices must be non-empty, >= 0 and strictly "
                         f"increasing, got {wanted[:8]}{' ...' if len(wanted) > 8 else ''}")
    if size is not None and size < 1:
        raise ValueError(f"read_frames: size must be >= 1, got {size}")
    start = wanted[0]
    try:
        frames = None
        if start >= _SEEK_MIN_START:
            try:
                with _open_input(path) as container:
                    stream = _video_stream(container, path)
                    convert = _FrameConverter(stream, size)
                    frames = _read_by_seeking(
                        container, stream, wanted, convert, os.path.getsize(path)
                    )
            except CvgError:
                raise
            except _AV_ERRORS:
                frames = None  # the exact path below decides whether the file is bad
        if frames is None:
            frames = _read_sequential(path, wanted, size)
    except CvgError:
        raise
    except _AV_ERRORS as exc:
        raise CvgError(
            f"{path}: decoding failed ({_reason(exc)}); the file is damaged: re-encode or "
            "remove it, or pass --skip-bad-videos"
        ) from None
    return np.stack(frames)


# --------------------------------------------------------------------------- write

_EVEN_ONLY_420 = {"libx264", "libx265", "h264_nvenc", "hevc_nvenc", "libopenh264"}
_QSCALE_CODECS = {
    "mpeg4", "mjpeg", "mpeg1video", "mpeg2video", "msmpeg4", "msmpeg4v2", "wmv1", "wmv2", "h263",
    "flv",
}


def _pick_pix_fmt(codec: str, width: int, height: int) -> str:
    """yuv420p where possible (plays everywhere); yuv444p for odd sizes with x264/x265
    (4:2:0 needs even sizes there; 4:4:4 keeps the exact size instead of padding)."""
    try:
        supported = [f.name for f in (av.codec.Codec(codec, "w").video_formats or [])]
    except Exception:
        supported = []
    odd = width % 2 or height % 2
    groups = [("yuv444p", "yuvj444p"), ("rgb24", "bgr0", "gbrp", "bgr24")]
    if not (odd and codec in _EVEN_ONLY_420):
        groups.insert(0, ("yuv420p", "yuvj420p"))
    for group in groups:
        for name in supported:  # the codec's own order: mjpeg lists yuvj420p first
            if name in group:
                return name
    return supported[0] if supported else "yuv420p"


def _quality_options(codec: str, crf: int) -> dict[str, str]:
    if codec in ("libx264", "libx265"):
        # veryfast, not x264's default medium: encoding sits on generation's critical path
        # on a CPU, and on generated clips (32x32, 2 x 1,024 frames, CRF 10) it encoded 2.2x
        # faster (0.072 s vs 0.158 s) into a file 9% smaller; CRF keeps the quality
        return {"crf": str(crf), "preset": "veryfast"}
    if codec == "libvpx-vp9":
        return {"crf": str(crf), "b": "0", "row-mt": "1"}
    if codec == "libvpx":
        return {"crf": str(max(4, crf)), "b": "20M"}
    return {}


class VideoWriter:
    """Stream uint8 RGB frames into a video file; the file appears only on success.

    Frames go to a hidden temporary file in the destination folder
    (`.<name>.<random>.partial<ext>`, ignored by `VideoFolder`) that `close()` renames
    to `path`; an exception inside `with VideoWriter(...)` deletes it instead, so a
    crash never leaves a half-written file under the final name.

    Default: H.264 (libx264) yuv420p at CRF 10 (visually lossless) in .mp4 with the
    index first ("faststart": plays while loading in a browser). `options` and
    `container_options` override the codec's and the muxer's FFmpeg options. Odd
    frame sizes are written as yuv444p with x264 (exact size, decodes everywhere
    FFmpeg does) rather than padded. MPEG-4 Part 2/MJPEG use qscale 2; VP8/VP9 CRF.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        codec: str = "libx264",
        *,
        crf: int = 10,
        pix_fmt: str | None = None,
        threads: int = 0,
        options: dict[str, str] | None = None,
        container_options: dict[str, str] | None = None,
    ):
        if not fps or fps <= 0:
            raise ValueError(f"VideoWriter: fps must be > 0 (got {fps})")
        self.path = Path(path)
        self.fps = fps
        self.codec = codec
        self.crf = crf
        self.pix_fmt = pix_fmt
        self.threads = threads
        self.options = options
        self.container_options = container_options
        self.frames_written = 0
        self._rate = Fraction(fps).limit_denominator(1001)
        self._container = None
        self._stream = None
        self._size: tuple[int, int] | None = None  # (H, W)
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CvgError(
                f"{self.path.parent}: cannot create the output folder ({exc.strerror})"
            ) from None
        token = secrets.token_hex(4)
        self._tmp = self.path.with_name(f".{self.path.stem}.{token}.partial{self.path.suffix}")

    def _open(self, height: int, width: int) -> None:
        try:
            muxer = _muxer_for(self.path)
            # faststart: index first, so a browser plays while loading and a cut copy keeps frames
            copts = {"movflags": "+faststart"} if muxer in ("mp4", "mov") else {}
            copts.update(self.container_options or {})
            container = av.open(str(self._tmp), mode="w", format=muxer, container_options=copts)
        except _AV_ERRORS as exc:
            raise CvgError(
                f"{self.path}: cannot write a video here ({_reason(exc)}); "
                "use a .mp4 path in a writable folder"
            ) from None
        try:
            stream = container.add_stream(self.codec, rate=self._rate)
            stream.width, stream.height = width, height
            stream.pix_fmt = self.pix_fmt or _pick_pix_fmt(self.codec, width, height)
            stream.codec_context.time_base = 1 / self._rate
            stream.thread_count = self.threads
            if self.codec in _QSCALE_CODECS:
                stream.codec_context.qscale = True
                stream.codec_context.global_quality = 2 * 118  # -q:v 2 (FF_QP2LAMBDA = 118)
            opts = _quality_options(self.codec, self.crf)
            opts.update(self.options or {})
            if opts:
                stream.options = opts
        except BaseException as exc:
            container.close()
            self._tmp.unlink(missing_ok=True)
            if isinstance(exc, _AV_ERRORS):
                raise CvgError(
                    f"{self.path}: cannot encode {width}x{height} video with {self.codec} in this "
                    f"container ({_reason(exc)}); use codec libx264 and a .mp4 path"
                ) from None
            raise
        self._container, self._stream, self._size = container, stream, (height, width)

    def write(self, frames) -> None:
        """Append frames: uint8 (T, H, W, 3) or one (H, W, 3) (numpy or CPU tensor)."""
        if self._closed:
            raise ValueError(f"VideoWriter({self.path}): write() after close()")
        arr = np.asarray(frames)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise ValueError(
                "VideoWriter.write: expected uint8 (T, H, W, 3) or (H, W, 3), "
                f"got {arr.dtype} {arr.shape}"
            )
        if self._container is None:
            self._open(arr.shape[1], arr.shape[2])
        if arr.shape[1:3] != self._size:
            raise ValueError(
                f"VideoWriter.write: frame size {arr.shape[1:3]} differs from the first "
                f"{self._size}"
            )
        stream, container = self._stream, self._container
        for img in arr:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = self.frames_written
            frame.time_base = stream.codec_context.time_base
            for packet in stream.encode(frame):
                container.mux(packet)
            self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and move the file to its final name."""
        if self._closed:
            return
        if self._container is None:
            self._closed = True
            raise ValueError(f"VideoWriter({self.path}): no frames written; nothing saved")
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the partial file; the final path is left untouched."""
        self._closed = True
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                pass
            self._container = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self):
        if not getattr(self, "_closed", True):
            try:
                self.abort()
            except Exception:
                pass


def _muxer_for(path: Path) -> str | None:
    """The container format from the final name's suffix (the temp name shares it)."""
    suffix = path.suffix.lower()
    muxers = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
              ".avi": "avi"}
    return muxers.get(suffix)


def write_video(
    path: str | os.PathLike, frames, fps: float, codec: str = "libx264", **kwargs
) -> Path:
    """Write uint8 (T, H, W, 3) frames to `path` atomically; returns the path."""
    with VideoWriter(path, fps, codec, **kwargs) as writer:
        writer.write(frames)
    return Path(path)


# --------------------------------------------------------------------------- grid


def save_frame_grid_png(
    path: str | os.PathLike,
    videos,
    max_frames: int = 16,
    min_tile: int = 64,
    separator: int = 2,
    separator_value: int = 255,
) -> Path:
    """One row per video, one column per frame (the first `max_frames`), as a PNG.

    videos: uint8 (N, T, H, W, 3). Tiles are enlarged by an integer factor
    (nearest neighbour, so pixels stay crisp) until the smaller side is at least
    `min_tile`; tiles are separated by `separator` px lines of `separator_value`.
    Output size: width = T'*W*s + (T'-1)*sep, height = N*H*s + (N-1)*sep, where
    T' = min(T, max_frames) and s = ceil(min_tile / min(H, W)). Written atomically.
    """
    from PIL import Image

    arr = np.asarray(videos)
    if arr.ndim != 5 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(
            f"save_frame_grid_png: expected uint8 (N, T, H, W, 3), got {arr.dtype} {arr.shape}"
        )
    n, t, h, w, _ = arr.shape
    t = min(t, max_frames)
    s = max(1, -(-min_tile // min(h, w)))
    th, tw = h * s, w * s
    grid_h, grid_w = n * th + (n - 1) * separator, t * tw + (t - 1) * separator
    grid = np.full((grid_h, grid_w, 3), separator_value, np.uint8)
    for i in range(n):
        for j in range(t):
            tile = arr[i, j].repeat(s, axis=0).repeat(s, axis=1)
            y, x = i * (th + separator), j * (tw + separator)
            grid[y : y + th, x : x + tw] = tile
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    try:
        Image.fromarray(grid).save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
