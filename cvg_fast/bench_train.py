"""`cvg bench train`: the speed of one whole training step, configurations side by side.

Why: the fused-op benchmarks (bench/bench_gru_blend.py) time one op; what a user pays is
the whole step (D update on [real ; fake], then G update; for level L > 1 also the frozen
levels below making the input). This runs `LevelTrainer.train_step` on one fixed random
batch under each configuration, in one process, so the rows share the machine state:

    fp32-reference      fp32, contiguous, every op on its reference backend (the baseline)
    fp32-channels-last  + channels-last activations (cvg_fast.nn.layout)
    bf16-channels-last  + bf16 autocast
    bf16-fused          + the fused kernels (the best backend `cvg_fast.ops.backends` finds):
                        the engine's default on a CPU with AVX512-BF16
    fp32-fused          fp32, channels-last, fused kernels (the default without native bf16)
    bf16-compile        bf16, channels-last, reference ops, G's and D's forward wrapped by
                        torch.compile: what a user would reach for instead (opt-in: slow to
                        compile on a CPU)

Under the step table, a per-op table (cvg_fast.bench_ops): the fused kernels against the
same math in eager torch and under torch.compile, with GB/s against a copy's bandwidth.

Shapes: the batch is (B, T, 3, S, S) clips at the preset's top level (T frames of S x S);
the trainer cuts each level's real pair from it, as in training. Level L > 1 needs trained
levels 1..L-1: they are made on the fly (1 training step each on random clips) in a
temporary folder; their quality does not matter for speed.

Peak memory: `torch.cuda.max_memory_allocated` over the timed steps on CUDA. On a CPU there
is no per-configuration counter (ru_maxrss only grows over the process), so it is "-".
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

import torch

from cvg_fast.config import CascadeConfig, get_preset
from cvg_fast.data.random_clips import RandomClips
from cvg_fast.errors import CvgError


@dataclass(frozen=True)
class BenchConfig:
    """One row: precision, layout, the fused-op backend asked for, and whether to compile."""

    amp: str  # "none" | "bf16"
    backend: str  # passed to backends.set_backend: "reference" | "auto"
    compile: bool = False
    channels_last: bool = False


CONFIGS: dict[str, BenchConfig] = {
    "fp32-reference": BenchConfig("none", "reference"),
    "fp32-channels-last": BenchConfig("none", "reference", channels_last=True),
    "bf16-channels-last": BenchConfig("bf16", "reference", channels_last=True),
    "bf16-fused": BenchConfig("bf16", "auto", channels_last=True),
    "fp32-fused": BenchConfig("none", "auto", channels_last=True),
    "bf16-compile": BenchConfig("bf16", "reference", compile=True, channels_last=True),
}
BASELINE = "fp32-reference"


@dataclass
class Row:
    """One configuration's numbers at one level (ms_per_step None when skipped)."""

    name: str
    amp: str
    channels_last: bool
    backend_requested: str
    backend_active: str  # what backends.resolve_backend("gru_cell", device) said in the row
    compile: bool
    ms_per_step: float | None = None
    steps_per_s: float | None = None
    speedup: float | None = None  # baseline ms / this ms (None without a timed baseline)
    peak_mem_bytes: int | None = None  # CUDA only
    setup_s: float | None = None  # trainer build + warmup steps (includes compile time)
    skipped: str | None = None  # the reason the row did not run


@dataclass
class LevelResult:
    level: int
    frames: int  # this level's frames (x^L at the training horizon)
    size: int
    rows: list[Row] = field(default_factory=list)


@dataclass
class BenchResult:
    settings: dict
    machine: dict
    levels: list[LevelResult]
    json_path: Path | None = None
    ops: list = field(default_factory=list)  # bench_ops.OpRow
    copy_gbps: float | None = None

    def report(self) -> str:
        """Header lines and one aligned table per level."""
        m, s = self.machine, self.settings
        lines = [
            f"device: {m['device_name']} ({m['device']}); cores {m['cores']}, torch threads "
            f"{m['torch_threads']}; bf16: {m['bf16_support']}; torch {m['torch']}",
            f"preset {s['preset']}, batch {s['batch_size']}, top clip {s['frames']} frames at "
            f"{s['size']}px, warmup {s['warmup']} + timed {s['steps']} steps, "
            f"dtype float32 (bf16 rows: autocast bf16)",
        ]
        if m["device"] == "cpu":
            lines.append("peak mem: '-' on CPU (no per-configuration counter; ru_maxrss only "
                         "grows over the process)")
        head = ("config", "ms/step", "steps/s", "x baseline", "peak mem", "backend", "setup s")
        for lr in self.levels:
            table = [head]
            notes = []
            for r in lr.rows:
                if r.skipped:
                    table.append((r.name, "-", "-", "-", "-", r.backend_active, "-"))
                    notes.append(f"  {r.name}: skipped: {r.skipped}")
                    continue
                mem = "-" if r.peak_mem_bytes is None else f"{r.peak_mem_bytes / 2**20:.0f} MiB"
                x = "-" if r.speedup is None else f"{r.speedup:.2f}"
                table.append((r.name, f"{r.ms_per_step:.1f}", f"{r.steps_per_s:.2f}", x, mem,
                              r.backend_active, f"{r.setup_s:.1f}"))
            widths = [max(len(row[i]) for row in table) for i in range(len(head))]
            lines.append(f"level {lr.level}: {lr.frames} frames at {lr.size}px")
            for i, row in enumerate(table):
                lines.append("  " + "  ".join(
                    c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
                if i == 0:
                    lines.append("  " + "  ".join("-" * w for w in widths))
            lines.extend(notes)
        if self.ops:
            from cvg_fast.bench_ops import report

            lines.extend(report(self.ops, self.copy_gbps))
        if self.json_path is not None:
            lines.append(f"numbers: {self.json_path}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"settings": self.settings, "machine": self.machine,
                "levels": [asdict(lr) for lr in self.levels],
                "ops": [asdict(r) for r in self.ops], "copy_gbps": self.copy_gbps}


# torch.compile on this 2-core CPU took 112 s for tiny level 1 and over 4 minutes for
# level 2 before the first timed step: opt in with `--configs ... bf16-compile` or `all`
DEFAULT_CONFIGS = ("fp32-reference", "fp32-channels-last", "bf16-channels-last", "bf16-fused")


def parse_configs(names) -> list[str]:
    """Names (a list or a comma-separated string; None = DEFAULT_CONFIGS, "all" = every
    one) checked against CONFIGS."""
    if names is None:
        return list(DEFAULT_CONFIGS)
    if names == "all" or (not isinstance(names, str) and list(names) == ["all"]):
        return list(CONFIGS)
    if isinstance(names, str):
        names = names.replace(",", " ").split()
    out = []
    for n in names:
        for part in n.split(","):
            part = part.strip()
            if not part:
                continue
            if part not in CONFIGS:
                raise CvgError(f"unknown bench config {part!r}: choose from {', '.join(CONFIGS)}")
            if part not in out:
                out.append(part)
    if not out:
        raise CvgError(f"--configs is empty: choose from {', '.join(CONFIGS)}")
    return out


def parse_levels(level, cfg: CascadeConfig) -> list[int]:
    """"all" / None -> every level; an int or digit string -> that level (range-checked)."""
    if level is None or str(level) == "all":
        return list(range(1, cfg.num_levels + 1))
    try:
        lv = int(level)
    except ValueError:
        raise CvgError(f"--level {level!r}: use a level number or 'all'") from None
    if not 1 <= lv <= cfg.num_levels:
        raise CvgError(f"--level {lv} is out of range: preset {cfg.name!r} has levels "
                       f"1..{cfg.num_levels}")
    return [lv]


def machine_info(device: torch.device) -> dict:
    """Device name, cores, torch threads and bf16 support, for the header and the JSON."""
    info = {"device": device.type, "cores": os.cpu_count(), "torch_threads":
            torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version()}
    model, flags = "", ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1]
    except OSError:  # not Linux: keep platform's answer
        flags = ""
    cpu_model = info["cpu_model"] = model or platform.processor() or "unknown CPU"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        info["device_name"] = name
        info["bf16_support"] = f"{name} (bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'})"
    else:
        info["device_name"] = cpu_model
        info["bf16_support"] = ("avx512_bf16" if "avx512_bf16" in flags.split()
                                else "no avx512_bf16 (bf16 emulated, slow)")
    return info


def _bench_cfg(cfg: CascadeConfig, batch_size: int, num_classes: int) -> CascadeConfig:
    c = cfg.copy()
    c.num_classes = num_classes
    c.train.batch_size = batch_size
    c.train.num_workers = 0
    c.train.steps = 1  # for the lower levels made on the fly
    c.train.checkpoint_every = c.train.sample_every = c.train.log_every = 1
    c.train.bn_recalibration_batches = 1
    return c.validate()


def make_lower_levels(cfg: CascadeConfig, upto: int, run: Path, dataset) -> None:
    """Train levels 1..upto for 1 step each into `run` (frozen inputs for level upto + 1)."""
    from cvg_fast.training import LevelTrainer
    from cvg_fast.training.distributed import DistInfo

    for level in range(1, upto + 1):
        c = cfg.copy()
        c.train.amp = "none"
        LevelTrainer(c, level, dataset, run, run, DistInfo(device=torch.device("cpu")),
                     overwrite=True, progress=False).run()


def _fixed_batch(dataset: RandomClips, batch_size: int) -> dict:
    """One batch {"video": (B, T, 3, S, S), "label": (B,)} reused by every timed step."""
    items = [dataset[(i, 1000 + i)] for i in range(batch_size)]
    return {"video": torch.stack([it["video"] for it in items]),
            "label": torch.stack([it["label"] for it in items])}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _compile_forwards(trainer) -> None:
    """torch.compile G's and D's forward in place: the modules stay the same objects, so
    spectral_norm_step, state_dict and the optimizers see them unchanged."""
    for m in (trainer.G, trainer.D):
        m.forward = torch.compile(m.forward)


def _run_row(name: str, bc: BenchConfig, cfg: CascadeConfig, level: int, dataset, batch,
             lower_run: Path, work: Path, device: torch.device, steps: int,
             warmup: int) -> Row:
    """Build a trainer under `bc`, warm it up, time `steps` train_step calls on `batch`."""
    from cvg_fast.ops import backends
    from cvg_fast.training import LevelTrainer
    from cvg_fast.training.distributed import DistInfo

    backends.set_backend(bc.backend)
    row = Row(name, bc.amp, bc.channels_last, bc.backend,
              backends.resolve_backend("gru_cell", device), bc.compile)
    trainer = None
    try:
        c = cfg.copy()
        c.train.amp = bc.amp
        c.train.channels_last = bc.channels_last
        t0 = time.perf_counter()
        trainer = LevelTrainer(c, level, dataset, work, lower_run, DistInfo(device=device),
                               overwrite=True, progress=False)
        if bc.compile:
            _compile_forwards(trainer)
        for _ in range(warmup):
            trainer.train_step(batch)
            trainer.step += 1
        _sync(device)
        row.setup_s = time.perf_counter() - t0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(batch)
            trainer.step += 1
        _sync(device)
        dt = time.perf_counter() - t0
        row.ms_per_step = dt / steps * 1e3
        row.steps_per_s = steps / dt
        if device.type == "cuda":
            row.peak_mem_bytes = int(torch.cuda.max_memory_allocated(device))
    except Exception as e:  # one row failing (a compile error, bf16 overflow) is reported
        first = (f"{type(e).__name__}: {e}".splitlines() or [type(e).__name__])[0]
        row.skipped = first[:300]
        row.ms_per_step = row.steps_per_s = row.setup_s = None
    finally:
        backends.set_backend(None)
        del trainer
        if bc.compile:
            torch._dynamo.reset()
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def bench_train(preset: str = "tiny", level="all", batch_size: int | None = None,
                steps: int = 10, warmup: int = 2, configs=None,
                out: str | os.PathLike | None = "bench/results", device: str | None = None,
                cfg: CascadeConfig | None = None, num_classes: int | None = None,
                log: Callable[[str], None] | None = print, ops: bool = True) -> BenchResult:
    """Time a training step of each level in `level` under each named configuration.

    `cfg` (tests) replaces the preset's config; `batch_size` defaults to its
    train.batch_size; `num_classes` to the config's (4 when it says "from the data", -1).
    Writes `out`/train_<preset>_<device>_<YYYYmmdd-HHMMSS>.json (none when out is None).
    ops: also the per-op table (cvg_fast.bench_ops), compiled variants only when a
    compile row is asked for.
    """
    if cfg is None:
        cfg = get_preset(preset)
    cfg = cfg.copy()
    names = parse_configs(configs)
    levels = parse_levels(level, cfg)
    batch_size = cfg.train.batch_size if batch_size is None else batch_size
    if steps < 1 or warmup < 0 or batch_size < 1:
        raise CvgError(f"need --steps >= 1, --warmup >= 0 and --batch-size >= 1 (got {steps}, "
                       f"{warmup}, {batch_size})")
    if num_classes is None:
        num_classes = 4 if cfg.num_classes < 0 else cfg.num_classes
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CvgError(f"--device {device}: no CUDA device visible")
    say = log or (lambda s: None)
    bcfg = _bench_cfg(cfg, batch_size, num_classes)
    top = bcfg.levels[-1]
    dataset = RandomClips(top.frames, top.size, num_classes)
    batch = _fixed_batch(dataset, batch_size)
    machine = machine_info(dev)
    settings = {"preset": cfg.name, "levels": levels, "batch_size": batch_size, "steps": steps,
                "warmup": warmup, "configs": {n: asdict(CONFIGS[n]) for n in names},
                "baseline": BASELINE, "frames": top.frames, "size": top.size,
                "num_classes": num_classes, "device": dev.type, "dtype": "float32",
                "config": bcfg.to_dict()}
    result = BenchResult(settings, machine, [])
    with tempfile.TemporaryDirectory(prefix="cvg_bench_") as tmp:
        lower_run, work = Path(tmp) / "lower", Path(tmp) / "bench"
        if max(levels) > 1:
            t0 = time.perf_counter()
            say(f"making frozen levels 1..{max(levels) - 1} (1 step each) in {lower_run}")
            make_lower_levels(bcfg, max(levels) - 1, lower_run, dataset)
            say(f"  done in {time.perf_counter() - t0:.1f}s")
        for lv in levels:
            lc = bcfg.levels[lv - 1]
            lr = LevelResult(lv, lc.frames, lc.size)
            result.levels.append(lr)
            for name in names:
                say(f"level {lv}: {name} ({warmup} warmup + {steps} timed steps) ...")
                row = _run_row(name, CONFIGS[name], bcfg, lv, dataset, batch, lower_run, work,
                               dev, steps, warmup)
                lr.rows.append(row)
                say(f"  {name}: skipped: {row.skipped}" if row.skipped else
                    f"  {name}: {row.ms_per_step:.1f} ms/step (setup {row.setup_s:.1f}s, "
                    f"gru_cell on {row.backend_active})")
            base = next((r for r in lr.rows if r.name == BASELINE and r.ms_per_step), None)
            for r in lr.rows:
                if base is not None and r.ms_per_step:
                    r.speedup = 1.0 if r is base else base.ms_per_step / r.ms_per_step
    if ops:
        from cvg_fast.bench_ops import bench_ops
        from cvg_fast.nn.precision import resolve_precision

        say("per-op table (level-1 shapes) ...")
        prec = resolve_precision(dev)
        result.ops, result.copy_gbps = bench_ops(
            bcfg, batch_size, dev, prec.amp, prec.channels_last,
            compile=any(CONFIGS[n].compile for n in names), log=say)
    if out is not None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path(out) / f"train_{cfg.name}_{dev.type}_{stamp}.json"
        text = json.dumps(result.to_dict(), indent=2, default=_jsonable).encode()
        from cvg_fast.models.checkpoint import atomic_write_bytes

        atomic_write_bytes(path, lambda f: f.write(text))
        result.json_path = path
    return result


def _jsonable(x):
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, float) and not math.isfinite(x):
        return None
    raise TypeError(f"not JSON-able: {type(x).__name__}")
