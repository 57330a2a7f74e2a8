"""`cvg bench data DIR`: how fast a video folder feeds training, per source and worker count.

For each preset's clip shape (the top level's frames x size, every `frame_stride`-th
source frame) it reads batches through the training loader (`make_loader`: the same
sampler, workers and collation as `train_level`) and reports clips/s and frames read/s
(frames converted and resized; a decoder may decode more to reach them), for

    whole clip   the full top-level clip, as before level-aware decoding (the trainer
                 then builds the pyramid itself)
    level l      only what level l trains on (`LevelViews`: level 1 every K-th frame,
                 an upscaling level one window), as `train_level` reads now

with 0..N loader workers; and, when DALI is installed, DALI's CPU reader on whole clips
(VP8/VP9/MJPEG files only) with 1..N threads. Timing starts after the first batch, so worker start-up and
the first file opens are not counted. Results go to bench/results/data_<device>.json.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from cvg_fast.config import get_preset
from cvg_fast.errors import CvgError

DEFAULT_PRESETS = ("kinetics600", "bdd100k")


@dataclass
class DataRow:
    preset: str
    source: str  # "pyav" or "dali"
    reads: str  # "whole clip" or "level l"
    workers: int
    clips: int
    seconds: float
    frames_per_clip: int  # frames read (converted) per clip
    out_shape: str  # what one item delivers

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.seconds if self.seconds > 0 else float("nan")

    @property
    def frames_per_s(self) -> float:
        return self.clips_per_s * self.frames_per_clip


def _item_shape(item: dict) -> str:
    parts = [f"{k} {'x'.join(map(str, v.shape))}" for k, v in item.items()
             if k != "label" and isinstance(v, torch.Tensor)]
    return ", ".join(parts)


def measure_loader(dataset, batch_size: int, workers: int, batches: int, seed: int = 0
                   ) -> tuple[float, int, str]:
    """Seconds for `batches` batches after a first (untimed) one; clips; one item's shape."""
    from cvg_fast.training.data import make_loader

    loader = make_loader(dataset, batch_size, rank=0, world=1, seed=seed, start_step=0,
                         num_workers=workers)
    seconds, shape = _time_batches(loader, batches)
    del loader  # stops persistent workers
    return seconds, batches * batch_size, shape


def _time_batches(loader, batches: int) -> tuple[float, str]:
    """Seconds for `batches` batches after a first, untimed one; that batch's item shape."""
    it = iter(loader)
    first = next(it)
    shape = _item_shape({k: v[0] for k, v in first.items() if isinstance(v, torch.Tensor)})
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return time.perf_counter() - t0, shape


def measure_dali(dataset, batch_size: int, threads: int, batches: int, device: str = "cpu"
                 ) -> tuple[float, int, str, int] | None:
    """DALI's reader over the files of `dataset` it decodes on `device` (whole clips):
    (seconds, clips, item shape, files), or None when it decodes none of them."""
    from cvg_fast.data.dali_source import DaliClipLoader, split_by_decoder

    ok, _ = split_by_decoder(dataset.videos, device)
    if not ok:
        return None
    loader = DaliClipLoader([dataset.videos[i].path for i in ok], [dataset.labels[i] for i in ok],
                            dataset.clip_frames, dataset.frame_stride, dataset.size, batch_size,
                            device, num_threads=max(1, threads),
                            frames=[dataset.videos[i].frames for i in ok])
    seconds, shape = _time_batches(loader, batches)
    return seconds, batches * batch_size, shape, len(ok)


def bench_data(root: str | os.PathLike, presets=DEFAULT_PRESETS, workers=(0, 2),
               batches: int = 6, batch_size: int = 4, levels: str = "all",
               skip_bad: bool = False, log=None, dali: bool | None = None) -> list[DataRow]:
    """Measure every (preset, whole clip / level, workers) combination over `root`; with
    `dali` (None: when installed) also DALI's CPU reader on whole clips, `workers` read
    as its thread counts (0 -> 1)."""
    from cvg_fast.data import VideoFolder
    from cvg_fast.data.dali_source import dali_available
    from cvg_fast.data.level_views import LevelViews

    if dali is None:
        dali = dali_available()

    log = log or (lambda msg: None)
    rows: list[DataRow] = []
    cache = Path(tempfile.mkdtemp(prefix="cvg_bench_data_")) / "index.json"
    for name in presets:
        cfg = get_preset(name)
        top = cfg.levels[-1]
        which = range(1, cfg.num_levels + 1) if levels == "all" else [int(levels)]
        modes: list[tuple[str, LevelViews | None]] = [("whole clip", None)]
        modes += [(f"level {lv}", LevelViews.for_level(cfg, lv)) for lv in which]
        for label, views in modes:
            ds = VideoFolder(root, top.frames, top.size, frame_stride=cfg.frame_stride,
                             skip_bad=skip_bad, index_cache=cache, progress=False, views=views)
            per_clip = top.frames if views is None else len(views.top_indices())
            for w in workers:
                log(f"{name}: {label}, {w} workers ...")
                seconds, clips, shape = measure_loader(ds, batch_size, w, batches)
                rows.append(DataRow(name, "pyav", label, w, clips, seconds, per_clip, shape))
            if views is None and dali:
                for w in workers:
                    log(f"{name}: {label}, DALI cpu reader, {max(1, w)} threads ...")
                    got = measure_dali(ds, batch_size, w, batches)
                    if got is None:
                        log(f"{name}: DALI's cpu reader decodes none of these files "
                            f"(VP8/VP9/MJPEG only): no DALI row")
                        break
                    seconds, clips, shape, _ = got
                    rows.append(DataRow(name, "dali", label, w, clips, seconds, per_clip, shape))
    return rows


def report(rows: list[DataRow], header: str = "") -> str:
    lines = [header] if header else []
    lines.append(f"{'preset':<12} {'source':<6} {'reads':<11} {'workers':>7} {'clips/s':>8} "
                 f"{'frames read/s':>13} {'vs PyAV whole':>13}  item")
    whole = {(r.preset, r.workers): r.clips_per_s for r in rows
             if r.reads == "whole clip" and r.source == "pyav"}
    for r in rows:
        base = whole.get((r.preset, r.workers))
        ratio = f"{r.clips_per_s / base:.2f}x" if base else "-"
        lines.append(f"{r.preset:<12} {r.source:<6} {r.reads:<11} {r.workers:>7} "
                     f"{r.clips_per_s:>8.1f} {r.frames_per_s:>13.0f} {ratio:>13}  {r.out_shape}")
    return "\n".join(lines)


def _parse_ints(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise CvgError(f"--{name}: comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 0:
        raise CvgError(f"--{name}: comma-separated whole numbers >= 0, got {text!r}")
    return values


def add_arguments(p) -> None:
    p.add_argument("dir", help="a video folder (any layout `cvg data index` reads)")
    p.add_argument("--presets", default=",".join(DEFAULT_PRESETS),
                   help="clip shapes to read, comma-separated (default: kinetics600,bdd100k)")
    p.add_argument("--workers", default=f"0,{min(4, os.cpu_count() or 1)}",
                   help="loader worker counts, comma-separated (default: 0,<cores up to 4>)")
    p.add_argument("--levels", default="all", help="'all' or one level number (default: all)")
    p.add_argument("--batches", type=int, default=6,
                   help="timed batches per measurement, after one untimed (default: 6)")
    p.add_argument("--batch-size", type=int, default=4, help="clips per batch (default: 4)")
    p.add_argument("--skip-bad-videos", action="store_true", help="skip unreadable/short files")
    p.add_argument("--no-dali", action="store_true",
                   help="leave out DALI's rows (default: measured when DALI is installed)")
    p.add_argument("--out", default="bench/results", help="folder for data_<device>.json")
    p.add_argument("--json", default=None, help="write the JSON here instead")


def run_from_args(args) -> int:
    from cvg_fast.bench_train import machine_info

    presets = [s for s in args.presets.split(",") if s]
    workers = _parse_ints(args.workers, "workers")
    if args.batches < 1 or args.batch_size < 1:
        raise CvgError("--batches and --batch-size must be >= 1")
    info = machine_info(torch.device("cpu"))
    t0 = time.time()
    rows = bench_data(args.dir, presets, workers, args.batches, args.batch_size, args.levels,
                      args.skip_bad_videos,
                      log=lambda m: print(m, file=sys.stderr, flush=True),
                      dali=False if args.no_dali else None)
    header = (f"cvg bench data {args.dir}: {info['device_name']}, {info['cores']} cores; "
              f"the training loader's sources, batches of {args.batch_size}, "
              f"{args.batches} timed batches each")
    text = report(rows, header)
    path = Path(args.json) if args.json else Path(args.out) / "data_cpu.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": info, "dir": os.path.abspath(args.dir),
                                "rows": [asdict(r) | {"clips_per_s": r.clips_per_s,
                                                      "frames_per_s": r.frames_per_s}
                                         for r in rows],
                                "seconds": round(time.time() - t0, 1)}, indent=2))
    print(text)
    print(f"numbers: {path}")
    return 0
