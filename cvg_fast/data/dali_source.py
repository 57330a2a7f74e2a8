"""Training clips decoded by NVIDIA DALI: NVDEC on a GPU, libavcodec (VP8/VP9/MJPEG) on a CPU.

Why: on a GPU, PyAV worker processes decode on the CPU and ship float clips over the
bus; DALI decodes with NVDEC and resizes/crops/normalises on the GPU, so a batch is
born where the model runs. On a CPU it is an alternative to PyAV for the codecs its
CPU reader takes.

One `fn.experimental.readers.video` serves both devices (same arguments, same clip
semantics); per its documentation the CPU variant decodes VP8, VP9 and MJPEG only, the
GPU variant also H.264, H.265/HEVC, AV1 and MPEG-4 Part 2. A file of another codec is
silently dropped by DALI, so `split_by_decoder` sorts the files first and the caller
decides what happens to the rest (PyAV fallback or an error), and `DaliClipLoader`
checks that the reader holds as many clips as the file list predicts.

A clip is what `VideoFolder` gives for the same start: frames start, start+stride, ...,
shorter side resized to `size` (linear, antialiased when shrinking), centre crop
size x size, {"video": float32 (B, T, 3, size, size) in [-1, 1], "label": int64 (B,)}.
Clips start at 0, step, 2*step, ... of each file (default step: one clip span, so an
epoch reads every frame once); PyAV instead draws one random start per file per epoch.
DALI's RGB differs from swscale's by chroma upsampling (bilinear vs nearest): up to
~80 levels at sharp colour edges, a few levels on average.
"""

from __future__ import annotations

import hashlib
from typing import Iterator, Sequence

import torch

from cvg_fast.errors import CvgError

__all__ = [
    "DALI_CPU_CODECS",
    "DALI_GPU_CODECS",
    "DaliClipLoader",
    "canonical_codec",
    "clips_per_file",
    "dali_available",
    "require_dali",
    "split_by_decoder",
]

#: FFmpeg codec names (as in `VideoInfo.codec`) DALI's CPU video reader decodes.
DALI_CPU_CODECS = frozenset({"vp8", "vp9", "mjpeg"})
#: ... and its GPU (NVDEC) reader, per the `fn.experimental.readers.video` documentation.
DALI_GPU_CODECS = DALI_CPU_CODECS | {"h264", "hevc", "av1", "mpeg4"}

# decoder names PyAV reports -> the codec they decode (PyAV's AV1 decoder is dav1d)
_CODEC_ALIASES = {"libdav1d": "av1", "libaom-av1": "av1", "libvpx": "vp8", "libvpx-vp9": "vp9",
                  "h265": "hevc", "libopenh264": "h264"}

INSTALL_HINT = ('pip install -e ".[dali]" (the nvidia-dali-cudaNNN suffix must match the '
                "CUDA major version of the installed torch)")

_available: bool | None = None

# DALI's crop anchor is round(pos * (W - size)); read_clip's is (W - size) // 2. Just under
# 0.5 rounds the odd margins down too (exact while W - size < 0.5 / 1e-4 = 5,000 px).
_CENTRE = 0.5 - 1e-4


def dali_available() -> bool:
    """True when `nvidia.dali` imports (checked once per process)."""
    global _available
    if _available is None:
        try:
            import nvidia.dali  # noqa: F401
            import nvidia.dali.plugin.pytorch  # noqa: F401
            _available = True
        except ImportError:
            _available = False
    return _available


def require_dali(what: str = "--data-backend dali") -> None:
    """One-line CvgError when DALI is asked for and missing."""
    if not dali_available():
        raise CvgError(f"{what} needs NVIDIA DALI, which is not installed: {INSTALL_HINT}, "
                       f"or use --data-backend pyav")


def canonical_codec(name: str) -> str:
    """FFmpeg decoder name -> codec name: 'libdav1d' -> 'av1', 'vp9' -> 'vp9'."""
    name = (name or "").lower()
    return _CODEC_ALIASES.get(name, name)


def split_by_decoder(videos: Sequence, device: torch.device | str) -> tuple[list[int], list[int]]:
    """Indices of `videos` (objects with `.codec`) DALI decodes on `device`, and the rest."""
    codecs = DALI_GPU_CODECS if torch.device(device).type == "cuda" else DALI_CPU_CODECS
    ok, rest = [], []
    for i, info in enumerate(videos):
        (ok if canonical_codec(info.codec) in codecs else rest).append(i)
    return ok, rest


def clips_per_file(frames: int, clip_frames: int, stride: int, step: int) -> int:
    """How many clips DALI's reader cuts from a file of `frames` frames (whole clips only)."""
    span = (clip_frames - 1) * stride + 1
    return 0 if frames < span else (frames - span) // step + 1


def _reader_seed(seed: int, start_step: int) -> int:
    """The shuffle seed: keyed by the start step, so a resumed run reads a new order
    (a stable hash, like models.noise.seed_key, which data/ must not import)."""
    digest = hashlib.blake2b(f"{seed}/dali/{start_step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % (2**31 - 1)


class DaliClipLoader:
    """Endless batches {"video": float32 (B, T, 3, size, size) in [-1, 1], "label": int64 (B,)}
    decoded by DALI, on `device` (cuda tensors from the GPU reader, cpu tensors otherwise).

    files/labels: the files to read (every one a codec `split_by_decoder` accepts for
    `device`) and their dataset labels (passed to the reader, not DALI's folder indexing).
    shard_id/num_shards: one shard per rank; within an epoch the shards are disjoint, and
    DALI moves each rank to the next shard every epoch (stick_to_shard=False). The order
    is shuffled (within the reader's buffer) with a seed keyed by (seed, start_step).
    `frames`: the files' frame counts; when given, the reader's clip count is checked
    against them and any difference is described in `.mismatch`.
    """

    def __init__(self, files: Sequence[str], labels: Sequence[int], clip_frames: int,
                 frame_stride: int, size: int, batch_size: int, device: torch.device | str,
                 shard_id: int = 0, num_shards: int = 1, seed: int = 0, start_step: int = 0,
                 random_shuffle: bool = True, num_threads: int = 2, step: int | None = None,
                 frames: Sequence[int] | None = None):
        require_dali()
        if not files:
            raise CvgError("DaliClipLoader: no files to read; pass at least one video")
        if len(labels) != len(files):
            raise CvgError(f"DaliClipLoader: {len(files)} files but {len(labels)} labels")
        self.device = torch.device(device)
        if self.device.type == "cuda":
            if not torch.cuda.is_available():
                raise CvgError("DALI's GPU reader needs a CUDA device and none is visible; "
                               "use --device cpu (DALI CPU reader) or --data-backend pyav")
            index = self.device.index if self.device.index is not None else \
                torch.cuda.current_device()
            self.device = torch.device("cuda", index)
        elif self.device.type != "cpu":
            raise CvgError(f"DALI reads onto cpu or cuda, not {self.device}")
        self.files, self.labels = [str(f) for f in files], [int(v) for v in labels]
        self.clip_frames, self.frame_stride, self.size = clip_frames, frame_stride, size
        self.batch_size = batch_size
        self.step = step or (clip_frames - 1) * frame_stride + 1
        self.shard_id, self.num_shards = shard_id, num_shards
        self.pipe = build_pipeline(self.files, self.labels, clip_frames, frame_stride, self.step,
                                   size, self.device, batch_size=batch_size,
                                   num_threads=max(1, num_threads), shard_id=shard_id,
                                   num_shards=num_shards, random_shuffle=random_shuffle,
                                   seed=_reader_seed(seed, start_step))
        try:
            self.pipe.build()
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CvgError(f"DALI could not start its {self.device.type} video reader over "
                           f"{len(files)} files ({first[:200]}); use --data-backend pyav") from None
        #: clips in one epoch over all shards, as the reader counts them
        self.epoch_size = int(self.pipe.reader_meta("reader")["epoch_size"])
        self.expected = None if frames is None else sum(
            clips_per_file(f, clip_frames, frame_stride, self.step) for f in frames)
        #: "" or why the reader holds fewer/more clips than the file list predicts
        self.mismatch = ""
        if self.expected is not None and self.epoch_size != self.expected:
            self.mismatch = (f"DALI's reader holds {self.epoch_size:,} clips where the "
                             f"{len(files):,} files predict {self.expected:,}: it dropped or "
                             "cut short some files (variable frame rate? damaged?)")
        if self.epoch_size == 0:
            raise CvgError(f"DALI's {self.device.type} reader found no whole clip of "
                           f"{clip_frames} frames x stride {frame_stride} in {len(files)} files "
                           f"(e.g. {self.files[0]}); use --data-backend pyav")
        self._iter = None

    def describe(self) -> str:
        where = "gpu reader (NVDEC)" if self.device.type == "cuda" else "cpu reader"
        return f"DALI {where}, {len(self.files):,} files, {self.epoch_size:,} clips/epoch"

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        from nvidia.dali.plugin.pytorch import DALIGenericIterator

        if self._iter is None:  # one reader: a second iter() continues where the first was
            # size=-1 and no reader_name: never an epoch end; the reader wraps around
            self._iter = DALIGenericIterator([self.pipe], ["video", "label"], size=-1)
        for out in self._iter:
            batch = out[0]
            yield {"video": batch["video"], "label": batch["label"].reshape(-1)}


def build_pipeline(files: list[str], labels: list[int], clip_frames: int, frame_stride: int,
                   step: int, size: int, device: torch.device, *, batch_size: int,
                   num_threads: int, shard_id: int, num_shards: int, random_shuffle: bool,
                   seed: int):
    """The DALI pipeline (defined, not built): read -> resize shorter side -> centre crop ->
    (T, 3, size, size) float in [-1, 1]; every op after the reader runs on the reader's
    device. Building it is the caller's (it needs the GPU when device is cuda)."""
    from nvidia.dali import fn, pipeline_def, types

    on_gpu = device.type == "cuda"

    @pipeline_def
    def clips():
        video, label = fn.experimental.readers.video(
            device="gpu" if on_gpu else "cpu", filenames=files, labels=labels,
            sequence_length=clip_frames, stride=frame_stride, step=step, pad_mode="none",
            shard_id=shard_id, num_shards=num_shards, random_shuffle=random_shuffle,
            name="reader")
        # (T, H, W, 3) uint8 -> shorter side `size` -> centre size x size, as read_clip does
        video = fn.resize(video, resize_shorter=size, interp_type=types.INTERP_LINEAR,
                          antialias=True)
        video = fn.crop(video, crop=(size, size), crop_pos_x=_CENTRE, crop_pos_y=_CENTRE)
        video = fn.transpose(video, perm=[0, 3, 1, 2])  # (T, 3, size, size)
        video = fn.cast(video, dtype=types.FLOAT) / 127.5 - 1.0
        return video, fn.cast(label, dtype=types.INT64)

    return clips(batch_size=batch_size, num_threads=num_threads,
                 device_id=device.index if on_gpu else None, seed=seed)
