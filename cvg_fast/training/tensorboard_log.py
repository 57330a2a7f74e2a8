"""TensorBoard event files beside log.jsonl: OUT/level{L}/tb/ (`tensorboard --logdir OUT`).

Rank 0 writes; every other process, a run with --no-tensorboard, and a machine without the
`tensorboard` package (one warning) get the same object doing nothing, so the training loop
calls it unconditionally. log.jsonl stays the record a run is judged by; these are views.

Tags: train/<log key> (losses and their parts, skipped_nonfinite), perf/steps_per_s,
perf/data_wait_pct, perf/memory_GiB and perf/peak_memory_GiB (`run_memory`), eval/<metric>
(and perf/eval_seconds), samples/grid (the PNG grid) and samples/video (animated GIF).
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np


class TensorBoardLog:
    """A SummaryWriter on `log_dir`, or nothing (enabled=False or no tensorboard package)."""

    def __init__(self, log_dir: Path, enabled: bool = True):
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch raises this when the tensorboard package is missing
            warnings.warn("TensorBoard is off: the tensorboard package is not installed "
                          "(pip install tensorboard); logging to log.jsonl only", stacklevel=2)
            return
        self.writer = SummaryWriter(log_dir=str(log_dir))

    @property
    def active(self) -> bool:
        return self.writer is not None

    def scalars(self, step: int, values: dict, prefix: str) -> None:
        """Every finite number of `values` (not bools, not strings) as `prefix/key`."""
        if self.writer is None:
            return
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def train_line(self, step: int, logs: dict, perf: dict) -> None:
        """One log.jsonl line: the step's losses (train/) and the run's figures (perf/)."""
        self.scalars(step, logs, "train")
        self.scalars(step, perf, "perf")
        self.flush()

    def evaluation(self, result: dict) -> None:
        """An `evaluate()` result {"step": s, metric: value, ..., "eval_seconds": t}."""
        metrics = {k: v for k, v in result.items() if k not in ("step", "eval_seconds")}
        self.scalars(result["step"], metrics, "eval")
        self.scalars(result["step"], {"eval_seconds": result.get("eval_seconds")}, "perf")
        self.flush()

    def samples(self, step: int, grid_png: Path, video, fps: int) -> None:
        """The sample grid (the PNG as written) and the samples as one animated GIF.

        video: uint8 (T, H, W, 3), the tiled samples of the .mp4. The GIF is what
        SummaryWriter.add_video itself stores (an image summary), encoded here with Pillow:
        add_video needs moviepy (and its removed `moviepy.editor` module in moviepy 2).
        """
        if self.writer is None:
            return
        from PIL import Image

        with Image.open(grid_png) as im:
            grid = np.asarray(im.convert("RGB"))
        self.writer.add_image("samples/grid", grid, step, dataformats="HWC")
        self.writer.file_writer.add_summary(_gif_summary("samples/video", video, fps), step)
        self.flush()

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _gif_summary(tag: str, video, fps: int):
    """An image Summary holding `video` (uint8 (T, H, W, 3)) as a looping animated GIF."""
    from PIL import Image
    from tensorboard.compat.proto.summary_pb2 import Summary

    frames = [Image.fromarray(np.ascontiguousarray(f)) for f in np.asarray(video, np.uint8)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:],
                   duration=max(1, round(1000 / max(fps, 1))), loop=0)
    t, h, w, c = np.asarray(video).shape
    image = Summary.Image(height=h, width=w, colorspace=c, encoded_image_string=buf.getvalue())
    return Summary(value=[Summary.Value(tag=tag, image=image)])
