"""Video files encoded on a background thread while the next frames compute.

    with BackgroundWriter(fps=8) as bw:
        bw.open([Path("a.mp4"), Path("b.mp4")])   # one batch of videos
        bw.write(frames)                            # uint8 (B, t, H, W, 3): t frames of each
        bw.close_batch()                            # files appear when encoded
        ...

Why: encoding (libx264 through PyAV, which releases the GIL) on the compute
thread stalls the generator; behind a bounded queue it overlaps the next
windows, and the queue bounds memory (at most `depth` chunks wait). An error in
the writer (disk full, bad codec) is raised in the caller at its next call;
an error in the caller (or in the writer) aborts every open file, so a failed
call never leaves a half-written file under a final name (VideoWriter writes
to a hidden partial file and renames it on success).
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np

_OPEN, _FRAMES, _CLOSE, _ABORT, _STOP = range(5)


class BackgroundWriter:
    """One writer thread for all the batches of a generate() call."""

    def __init__(self, fps: float, depth: int = 4, poll_s: float = 0.05,
                 codec_threads: int = 0):
        from cvg_fast.data.video_io import VideoWriter  # PyAV only where files are written

        self._writer_cls = VideoWriter
        self.fps = fps
        # the encoder's own threads (0: FFmpeg's choice, one per core). When the generator
        # computes on the CPU, 1: more threads only preempt its OpenMP threads
        self.codec_threads = codec_threads
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._poll = poll_s
        self.error: BaseException | None = None
        self.finished: list[Path] = []  # files renamed to their final name, in order
        self._thread = threading.Thread(target=self._run, name="cvg-video-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ caller side
    def _put(self, item) -> None:
        while True:
            self._raise_if_failed()
            try:
                self._q.put(item, timeout=self._poll)
                return
            except queue.Full:
                continue

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    def open(self, paths: list[Path]) -> None:
        """Start a batch: one file per video of the batch, in the order of write()'s rows."""
        self._put((_OPEN, [Path(p) for p in paths]))

    def write(self, frames: np.ndarray) -> None:
        """uint8 (B, t, H, W, 3): the next t frames of each video of the open batch."""
        self._put((_FRAMES, frames))

    def close_batch(self) -> None:
        """The open batch is complete: flush and rename its files (on the writer thread)."""
        self._put((_CLOSE, None))

    def finish(self) -> None:
        """Wait until every file is written; raise the writer's error if it had one."""
        self._put((_STOP, None))
        self._thread.join()
        self._raise_if_failed()

    def abort(self) -> None:
        """Drop every open file (partial files deleted) and stop the thread."""
        if self._thread.is_alive():
            while self._thread.is_alive():
                try:
                    self._q.put((_ABORT, None), timeout=self._poll)
                    break
                except queue.Full:
                    continue
            self._thread.join()

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abort()

    # ------------------------------------------------------------ writer thread
    def _run(self) -> None:
        writers = []
        try:
            while True:
                kind, payload = self._q.get()
                if kind == _OPEN:
                    writers = [self._writer_cls(p, fps=self.fps, threads=self.codec_threads)
                               for p in payload]
                elif kind == _FRAMES:
                    if len(payload) != len(writers):
                        raise ValueError(f"BackgroundWriter: {len(payload)} videos of frames "
                                         f"for {len(writers)} open files")
                    for w, a in zip(writers, payload):
                        w.write(a)
                elif kind == _CLOSE:
                    for w in writers:
                        w.close()
                        self.finished.append(w.path)
                    writers = []
                elif kind == _ABORT:
                    for w in writers:
                        w.abort()
                    return
                else:  # _STOP
                    if writers:
                        raise ValueError("BackgroundWriter: finish() with a batch still open")
                    return
        except BaseException as e:  # surfaced in the caller at its next call
            for w in writers:
                w.abort()
            self.error = e
