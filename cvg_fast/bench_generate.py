"""`cvg bench generate`: long-video sampling speed and peak memory, ours against naive.

Why: the claim of `generate()` is that making a video of F frames costs time in
proportion to F and memory that does not grow with F. This measures both, for lengths
64 ... 16,384 output frames, against the pipeline a LongVideoGAN-style sampler runs:

    ours    cvg_fast.generate(..., out=DIR) with its defaults (amp "auto", the device's
            layout, level 1 streamed in time chunks, windows batched), .mp4 files streamed
    naive   fp32, contiguous: level 1 in one pass over all its frames, each upscaling level
            over the whole video (its windows one at a time, the outputs concatenated in
            memory), then the whole top-level video converted to uint8 and written, on the
            compute thread (`naive_generate` below; its fp32 output equals ours in fp32)

Each (pipeline, length) runs in a fresh child process (`python -m cvg_fast.bench_generate
--child SPEC`): peak RSS only grows over a process's life, so one process per measurement
is the only way to read each one's peak. The child builds the cascade (random weights from
the preset, seeded, or a trained run), runs a warm-up (lazy init, oneDNN kernel
selection and the encoder are not timed: a whole call at the measured length up to
REPEAT_MAX_FRAMES, so every shape the timed calls meet is warm; a 16-frame call above it),
then times the median of REPEATS calls up to REPEAT_MAX_FRAMES (one call above: long ones
vary little), each call that writes .mp4 files into
a temporary folder (deleted after). frames/s = output frames of all videos / seconds.

Peak RSS: the child's VmHWM (/proc/self/status), the high-water mark of its own address
space. Not ru_maxrss: on Linux a child started by vfork + exec (what subprocess does)
inherits its parent's ru_maxrss, so a bench parent bigger than the child would hide it.
ru_maxrss is in the JSON too (and is the fallback where /proc is missing). On CUDA the
table also has `torch.cuda.max_memory_allocated` over the timed call.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from cvg_fast.errors import CvgError

DEFAULT_LENGTHS = (64, 256, 1024, 4096, 16384)
PIPELINES = ("ours", "naive")
WARMUP_FRAMES = 16
# short lengths take ~1 s: warm up at the same length and time the median of REPEATS calls
# (both pipelines alike); a single call of a short length varied by ~10% run to run
REPEAT_MAX_FRAMES = 1024
REPEATS = 3
# The naive pipeline holds level 1's whole activations and the whole fp32 video. Measured on
# the tiny preset, this 2-core CPU, 1 torch thread, 2 videos: 4,096 frames 23 s at 1.8 GiB
# peak RSS, 16,384 frames 79 s at 5.8 GiB (ours: 52 s at 0.8 GiB); the whole default tiny
# run took under 4 minutes, so by default naive runs at every default length. Above the cap
# it is skipped (reported with the reason): lower it for bigger presets.
DEFAULT_NAIVE_MAX_FRAMES = 16384
MIB = 2 ** 20
LAST_LINE = re.compile(r"^generate vs naive at \d+ frames: \d+\.\d\dx frames/s$")


# --------------------------------------------------------------------------- the cascade

def bench_num_classes(cfg) -> int:
    """The preset's classes; 4 where it says "from the data" (-1), as `cvg bench train`."""
    return 4 if cfg.num_classes < 0 else cfg.num_classes


def build_cascade(preset: str = "tiny", seed: int = 0, run: str | os.PathLike | None = None,
                  device="cpu"):
    """A Cascade in eval mode: the trained one in `run`, or random weights from `preset`
    (torch.manual_seed(seed) first, so every child builds the same weights)."""
    import torch

    if run is not None:
        from cvg_fast.models.checkpoint import load_cascade

        return load_cascade(run, device=device).eval()
    from cvg_fast.config import get_preset
    from cvg_fast.models.cascade import Cascade, build_generator

    cfg = get_preset(preset)
    nc = bench_num_classes(cfg)
    torch.manual_seed(seed)
    gens = [build_generator(cfg, level, nc) for level in range(1, cfg.num_levels + 1)]
    return Cascade(cfg, gens, nc).to(device).eval()


# --------------------------------------------------------------------------- naive pipeline

def _labels(cascade, num_videos: int):
    """generate()'s default classes: video i gets class i mod K (None: unconditional)."""
    from cvg_fast.sampling.generate import _resolve_classes

    return _resolve_classes(cascade, num_videos, None)


def naive_video(cascade, num_videos: int, frames: int, seed: int = 0, device="cpu"):
    """The whole top-level video (N, frames, 3, H, W) fp32 in [-1, 1], made naively.

    Level 1 runs once over all ceil(frames / total_t_factor) of its frames; each upscaler
    then runs over its whole input, one window at a time (window starts as generate's,
    overlap 0: back to back, the last window end-aligned, a shared stretch cut in its
    middle), and its outputs are concatenated into the level's whole video. Same noise as
    generate (cvg_fast.models.noise, keyed by (seed, level, video, frame)), same classes.
    fp32, contiguous layout, no autocast. Mutates the cascade's layout (contiguous).
    """
    import torch

    from cvg_fast.models import frame_noise, video_noise, window_starts
    from cvg_fast.nn.layout import set_channels_last

    device = torch.device(device)
    cascade.to(device).eval()
    set_channels_last(cascade, False)
    ids = list(range(num_videos))
    labels = _labels(cascade, num_videos)
    y = torch.tensor(labels, device=device) if labels else None
    c1 = cascade.level_cfg(1)
    frames1 = math.ceil(frames / cascade.total_t_factor())
    with torch.inference_mode():
        z = video_noise(seed, ids, c1.z_dim).to(device)
        e = (frame_noise(seed, ids, 1, 0, frames1, (c1.z_t_dim,)).to(device)
             if c1.z_t_dim else None)
        x = cascade.generators[0](z, y, frames1, e)  # (N, T1, 3, s, s): all of level 1 at once
        total = frames1
        for level in range(2, cascade.num_levels + 1):
            gen, lc, tf = cascade.generators[level - 1], cascade.level_cfg(level), \
                cascade.t_factor(level)
            w = min(lc.window(level), total)
            starts = window_starts(total, w, 0)
            # output frame f comes from the last window that starts before it, except in a
            # stretch two windows share: the earlier window keeps its first half
            keep = [0]  # window i supplies output frames keep[i]..keep[i + 1]
            for prev, s in zip(starts, starts[1:]):
                keep.append(s * tf + (prev + w - s) * tf // 2)
            keep.append(total * tf)
            pieces = []
            for i, s in enumerate(starts):
                noise = frame_noise(seed, ids, level, s * tf, (s + w) * tf,
                                    (lc.z_ch, x.shape[-2], x.shape[-1])).to(device)
                out = gen(x[:, s: s + w], noise, y)  # (N, w * tf, 3, H, W)
                pieces.append(out[:, keep[i] - s * tf: keep[i + 1] - s * tf])
            x = torch.cat(pieces, dim=1)  # the level's whole video
            del pieces
            total *= tf
        return x[:, :frames]


def naive_generate(cascade, num_videos: int = 2, frames: int = 64, seed: int = 0, device="cpu",
                   out: str | os.PathLike | None = None, fps: int | None = None):
    """`naive_video`, then the whole video to uint8 and (with `out`) written, one .mp4 per
    video on this thread (names as generate's). Returns the paths, or uint8 (N, F, H, W, 3)."""
    import torch

    video = naive_video(cascade, num_videos, frames, seed, device)
    arr = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(
        0, 1, 3, 4, 2).cpu().numpy()  # the whole uint8 video at once
    del video
    if out is None:
        return arr
    from cvg_fast.data.video_io import VideoWriter

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels = _labels(cascade, num_videos)
    paths = []
    for i in range(num_videos):
        path = out / (f"video_{i:04d}" + (f"_class{labels[i]}" if labels else "") + ".mp4")
        with VideoWriter(path, fps=fps or cascade.cfg.fps) as w:
            w.write(arr[i])
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- one measurement

def _vm_hwm_kib() -> int | None:
    """Peak resident set of this process's address space (VmHWM), KiB; None without /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _maxrss_kib() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def _peak_rss_kib() -> int:
    hwm = _vm_hwm_kib()
    return hwm if hwm is not None else _maxrss_kib()


def _generate_kwargs(spec: dict) -> dict:
    """The optional generate() arguments the spec sets, checked against its signature."""
    from cvg_fast.sampling.generate import generate

    params = inspect.signature(generate).parameters
    kw = {}
    for name in ("chunk_frames", "max_batch"):
        if spec.get(name) is not None:
            if name not in params:
                raise CvgError(f"--{name.replace('_', '-')}: this generate() has no {name} "
                               f"argument: leave it out")
            kw[name] = spec[name]
    return kw


def measure(spec: dict) -> dict:
    """One (pipeline, length) measurement in THIS process (the child's body): a dict."""
    import torch

    from cvg_fast.sampling.generate import generate

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    device = torch.device(spec["device"])
    pipeline, frames, n, seed = spec["pipeline"], spec["frames"], spec["num_videos"], spec["seed"]
    cascade = build_cascade(spec["preset"], seed, spec.get("run"), device)
    kw = _generate_kwargs(spec) if pipeline == "ours" else {}
    setup_rss = _peak_rss_kib()
    precision = "fp32, contiguous (naive)"

    def run(length: int, out: Path):
        nonlocal precision
        if pipeline == "ours":
            _, stats = generate(cascade, num_videos=n, frames=length, seed=seed, device=device,
                                out=out, progress=False, return_stats=True, **kw)
            precision = stats.precision
        else:
            naive_generate(cascade, n, length, seed, device, out)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with tempfile.TemporaryDirectory(prefix="cvg_bench_gen_") as tmp:
        short = frames <= REPEAT_MAX_FRAMES
        run(frames if short else min(WARMUP_FRAMES, frames), Path(tmp) / "warmup")
        sync()
        warm_rss = _peak_rss_kib()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for _ in range(REPEATS if short else 1):
            t0 = time.perf_counter()
            run(frames, Path(tmp) / "run")
            sync()
            times.append(time.perf_counter() - t0)
        seconds = sorted(times)[len(times) // 2]
        written = sorted(p.stat().st_size for p in (Path(tmp) / "run").glob("*.mp4"))
    top = cascade.cfg.levels[cascade.num_levels - 1]
    return {
        "pipeline": pipeline, "frames": frames, "num_videos": n, "seconds": seconds,
        "all_seconds": times,
        "frames_per_s": frames * n / seconds, "peak_rss_kib": _peak_rss_kib(),
        "setup_rss_kib": setup_rss, "warmup_rss_kib": warm_rss, "ru_maxrss_kib": _maxrss_kib(),
        "cuda_peak_bytes": (int(torch.cuda.max_memory_allocated(device))
                            if device.type == "cuda" else None),
        "precision": precision, "videos_written": len(written),
        "mp4_bytes": sum(written), "size": top.size, "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }


def run_child(spec: dict, timeout: float | None = None, python: str | None = None) -> dict:
    """`measure(spec)` in a fresh process; its dict, or {"skipped": reason} when it failed."""
    cmd = [python or sys.executable, "-m", "cvg_fast.bench_generate", "--child", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"skipped": f"timed out after {timeout:.0f}s (--timeout)"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        err = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        why = err[-1] if err else f"exit code {proc.returncode}"
        if proc.returncode < 0:
            why = f"killed by signal {-proc.returncode} (out of memory?); {why}"
        return {"skipped": f"child failed: {why[:300]}"}
    return json.loads(lines[-1])


# --------------------------------------------------------------------------- the benchmark

@dataclass
class Row:
    """Both pipelines at one output length (None where one was skipped)."""

    frames: int
    ours: dict | None = None
    naive: dict | None = None
    skipped: dict = field(default_factory=dict)  # pipeline -> reason

    @property
    def ratio(self) -> float | None:
        if self.ours and self.naive:
            return self.ours["frames_per_s"] / self.naive["frames_per_s"]
        return None


@dataclass
class GenerateBench:
    settings: dict
    machine: dict
    rows: list[Row]
    json_path: Path | None = None
    seconds: float = 0.0

    def row(self, frames: int) -> Row | None:
        return next((r for r in self.rows if r.frames == frames), None)

    def rss_ratio(self, long: int = 16384, short: int = 256) -> float | None:
        a, b = self.row(long), self.row(short)
        if a and b and a.ours and b.ours:
            return a.ours["peak_rss_kib"] / b.ours["peak_rss_kib"]
        return None

    def compare_line(self) -> str:
        n = self.settings["compare_at"]
        r = self.row(n)
        if r is None or r.ratio is None:
            why = "; ".join(f"{k}: {v}" for k, v in (r.skipped.items() if r else [])) or \
                "not measured"
            return f"generate vs naive at {n} frames: n/a ({why})"
        return f"generate vs naive at {n} frames: {r.ratio:.2f}x frames/s"

    def report(self) -> str:
        m, s = self.machine, self.settings
        cuda = m.get("device", "cpu").startswith("cuda")
        lines = [
            f"device: {m.get('device_name', '?')} ({m.get('device', '?')}); cores "
            f"{m.get('cores')}, torch threads {m.get('torch_threads', '?')}; torch "
            f"{m.get('torch', '?')}",
            f"cascade: {s['cascade']}; {s['num_videos']} videos per call (one batch), seed "
            f"{s['seed']}",
            f"ours: generate(out=DIR) defaults, {s.get('ours_precision') or '?'}; .mp4 streamed",
            "naive: fp32, contiguous; level 1 in one pass, each level over the whole video, "
            "the whole video then written (same outputs as ours in fp32)",
            f"each measurement: a fresh process, a warm-up call, the median of {REPEATS} timed "
            f"calls up to {REPEAT_MAX_FRAMES} frames (one above) writing .mp4 "
            "(frames/s = output frames of all videos / s); peak RSS = the process's VmHWM, "
            "MiB = 2^20 bytes" + ("; CUDA peak = max_memory_allocated over the call" if cuda
                                  else ""),
        ]
        head = ["length", "ours frames/s", "ours peak RSS MiB", "naive frames/s",
                "naive peak RSS MiB", "speed ratio"]
        if cuda:
            head[3:3] = ["ours CUDA peak MiB"]
            head.insert(6, "naive CUDA peak MiB")
        table, notes = [head], []

        def cells(d):
            if d is None:
                return ["-", "-"] + (["-"] if cuda else [])
            c = [f"{d['frames_per_s']:.1f}", f"{d['peak_rss_kib'] / 1024:.0f}"]
            if cuda:
                c.append(f"{(d.get('cuda_peak_bytes') or 0) / MIB:.0f}")
            return c

        for r in self.rows:
            table.append([str(r.frames)] + cells(r.ours) + cells(r.naive) +
                         ["-" if r.ratio is None else f"{r.ratio:.2f}x"])
            notes += [f"  {r.frames} frames, {k}: skipped: {v}" for k, v in r.skipped.items()]
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        for i, row in enumerate(table):
            lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths)))
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines += notes
        rr = self.rss_ratio()
        lines.append("peak RSS ours at 16384 vs 256: " +
                     ("n/a (not both measured)" if rr is None else f"{rr:.2f}x"))
        if self.json_path is not None:
            lines.append(f"numbers: {self.json_path}")
        lines.append(f"done in {self.seconds:.1f}s")
        lines.append(self.compare_line())  # the last line, always
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"settings": self.settings, "machine": self.machine,
                "rows": [{**asdict(r), "speed_ratio": r.ratio} for r in self.rows],
                "rss_ratio_16384_vs_256": self.rss_ratio(),
                "compare_line": self.compare_line()}


def parse_lengths(text) -> list[int]:
    """'64,256,1024' (or a list) -> sorted distinct ints >= 1; a one-line CvgError else."""
    if isinstance(text, str):
        try:
            vals = [int(v) for v in text.replace(" ", "").split(",") if v]
        except ValueError:
            raise CvgError(f"--lengths must be comma-separated whole numbers >= 1, e.g. "
                           f"64,256,1024 (got {text!r})") from None
    else:
        vals = list(text)
    if not vals or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in vals):
        raise CvgError(f"--lengths must be whole numbers >= 1, e.g. 64,256,1024 (got {text!r})")
    return sorted(set(vals))


def _cascade_text(cfgs, num_classes: int, source: str) -> str:
    """'level 1 8 frames at 16px (g_ch 32); level 2 x2 frames, 32px, window 4 ...'."""
    parts = []
    for level in range(1, len(cfgs) + 1):
        c, lv = cfgs[level - 1], cfgs[level - 1].levels[level - 1]
        if level == 1:
            parts.append(f"level 1 {lv.size}px (trained on {lv.frames} frames, g_ch {lv.g_ch})")
        else:
            parts.append(f"level {level} {lv.size}px (x{c.t_factor(level)} frames, "
                         f"window {c.window(level)} input frames, g_ch {lv.g_ch})")
    return f"{source}: " + "; ".join(parts) + f"; {num_classes} classes"


def _machine(device: str, threads: int | None) -> dict:
    """What the header states about the machine (the children add their torch threads)."""
    import torch

    from cvg_fast.bench_train import machine_info

    info = machine_info(torch.device(device))
    info["device"] = device
    if threads:
        info["torch_threads"] = threads
    return info


def bench_generate(preset: str = "tiny", lengths=DEFAULT_LENGTHS, num_videos: int = 2,
                   naive_max_frames: int = DEFAULT_NAIVE_MAX_FRAMES, compare_at: int = 1024,
                   run: str | os.PathLike | None = None, device: str | None = None,
                   seed: int = 0, threads: int | None = None, json_path=None,
                   out: str | os.PathLike | None = "bench/results", timeout: float = 1200.0,
                   chunk_frames: int | None = None, max_batch: int | None = None,
                   pipelines=PIPELINES,
                   log: Callable[[str], None] | None = None) -> GenerateBench:
    """Measure every (pipeline, length) in a fresh child process; the result.

    Lengths above `naive_max_frames` skip the naive pipeline (reported with the reason);
    `compare_at` is measured whatever `lengths` says. JSON goes to `json_path`, or
    `out`/generate_<preset>_<device>.json (neither when both are None).
    """
    import torch

    from cvg_fast.config import get_preset

    t_start = time.perf_counter()
    lengths = parse_lengths(lengths)
    for name, v in (("--num-videos", num_videos), ("--compare-at", compare_at)):
        if not isinstance(v, int) or v < 1:
            raise CvgError(f"{name} must be a whole number >= 1 (got {v!r})")
    if naive_max_frames < 0:
        raise CvgError(f"--naive-max-frames must be >= 0 (got {naive_max_frames})")
    if threads is not None and threads < 1:
        raise CvgError(f"--threads must be >= 1 (got {threads})")
    bad = [p for p in pipelines if p not in PIPELINES]
    if bad:
        raise CvgError(f"unknown pipeline {bad[0]!r}: choose from {', '.join(PIPELINES)}")
    if compare_at not in lengths:
        lengths = sorted(set(lengths) | {compare_at})
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CvgError(f"--device {device}: no CUDA device visible")
    if run is not None:
        cascade = build_cascade(run=run, device="cpu")  # checks the folder (one-line errors)
        cfgs, nc, name, source = cascade.cfgs, cascade.num_classes, Path(run).name, f"run {run}"
        del cascade
    else:
        cfg = get_preset(preset)  # unknown preset: one-line CvgError
        cfgs, nc, name = [cfg] * cfg.num_levels, bench_num_classes(cfg), cfg.name
        source = f"preset {cfg.name}, random weights"
    say = log or (lambda msg: None)
    base = {"preset": preset, "run": None if run is None else str(run), "device": device,
            "num_videos": num_videos, "seed": seed, "threads": threads,
            "chunk_frames": chunk_frames, "max_batch": max_batch}
    settings = {**base, "lengths": lengths, "naive_max_frames": naive_max_frames,
                "compare_at": compare_at, "cascade": _cascade_text(cfgs, nc, source),
                "levels": [asdict(c.levels[i]) for i, c in enumerate(cfgs)],
                "warmup_frames": WARMUP_FRAMES, "repeats": REPEATS,
                "repeat_max_frames": REPEAT_MAX_FRAMES, "naive_dtype": "float32",
                "peak_rss": "VmHWM of a fresh child process per measurement, KiB"}
    result = GenerateBench(settings, _machine(device, threads), [])
    todo = [(f, p) for f in lengths for p in pipelines]
    for k, (frames, pipeline) in enumerate(todo, start=1):
        row = result.row(frames)
        if row is None:
            row = Row(frames)
            result.rows.append(row)
        if pipeline == "naive" and frames > naive_max_frames:
            row.skipped["naive"] = (f"above --naive-max-frames {naive_max_frames} (it holds "
                                    f"the whole video: slow and large)")
            say(f"[{k}/{len(todo)}] naive at {frames} frames: skipped (above "
                f"--naive-max-frames {naive_max_frames})")
            continue
        t0 = time.perf_counter()
        got = run_child({**base, "pipeline": pipeline, "frames": frames}, timeout=timeout)
        if "skipped" in got:
            row.skipped[pipeline] = got["skipped"]
            say(f"[{k}/{len(todo)}] {pipeline} at {frames} frames: skipped: {got['skipped']}")
            continue
        setattr(row, pipeline, got)
        if pipeline == "ours":
            settings["ours_precision"] = got["precision"]
        result.machine["torch_threads"] = got["torch_threads"]
        say(f"[{k}/{len(todo)}] {pipeline} at {frames} frames: {got['seconds']:.2f}s, "
            f"{got['frames_per_s']:.1f} frames/s, peak RSS {got['peak_rss_kib'] / 1024:.0f} MiB "
            f"({time.perf_counter() - t0:.1f}s with process start)")
    if json_path is None and out is not None:
        json_path = Path(out) / f"generate_{name}_{device.split(':')[0]}.json"
    result.seconds = time.perf_counter() - t_start
    if json_path is not None:
        from cvg_fast.models.checkpoint import atomic_write_bytes

        json_path = Path(json_path)
        result.json_path = json_path
        text = json.dumps(result.to_dict(), indent=2, default=str).encode()
        atomic_write_bytes(json_path, lambda f: f.write(text))
    return result


# --------------------------------------------------------------------------- command line

def add_arguments(p) -> None:
    """The flags of `cvg bench generate` (an argparse parser)."""
    p.add_argument("--preset", default="tiny", help="preset for random weights (default: tiny)")
    p.add_argument("--run", default=None,
                   help="a trained run folder instead of random weights from --preset")
    p.add_argument("--lengths", default=",".join(map(str, DEFAULT_LENGTHS)),
                   help="output lengths in frames, comma-separated (default: "
                        f"{','.join(map(str, DEFAULT_LENGTHS))})")
    p.add_argument("--naive-max-frames", type=int, default=DEFAULT_NAIVE_MAX_FRAMES,
                   help="skip the naive pipeline above this length (default: "
                        f"{DEFAULT_NAIVE_MAX_FRAMES}: the tiny run takes about 4 minutes on 2 "
                        "cores; naive at 16,384 frames peaks near 6 GiB there)")
    p.add_argument("--compare-at", type=int, default=1024,
                   help="length of the last line's speed ratio (default: 1024; always measured)")
    p.add_argument("--num-videos", type=int, default=2, help="videos per call (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="weights and noise seed (default: 0)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if visible)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads in each measurement (default: torch's default)")
    p.add_argument("--chunk-frames", type=int, default=None,
                   help="generate(chunk_frames=...) for ours (default: generate's)")
    p.add_argument("--max-batch", type=int, default=None,
                   help="generate(max_batch=...) for ours (default: generate's)")
    p.add_argument("--timeout", type=float, default=1200.0,
                   help="seconds one measurement may take before it is skipped (default: 1200)")
    p.add_argument("--out", default="bench/results",
                   help="folder for generate_<preset>_<device>.json (default: bench/results)")
    p.add_argument("--json", default=None, help="write the JSON here instead")


def run_from_args(args) -> int:
    """`cvg bench generate`: measure, print the table; its last line is the speed ratio."""
    res = bench_generate(
        preset=args.preset, lengths=args.lengths, num_videos=args.num_videos,
        naive_max_frames=args.naive_max_frames, compare_at=args.compare_at, run=args.run,
        device=args.device, seed=args.seed, threads=args.threads, json_path=args.json,
        out=args.out, timeout=args.timeout, chunk_frames=args.chunk_frames,
        max_batch=args.max_batch, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(res.report())
    return 0


def _main(argv=None) -> int:
    import argparse

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:  # one measurement; its JSON is the last stdout line
        print(json.dumps(measure(json.loads(argv[1]))), flush=True)
        return 0
    p = argparse.ArgumentParser(prog="python -m cvg_fast.bench_generate",
                                description="generate() vs the naive pipeline: frames/s and "
                                            "peak memory per output length")
    add_arguments(p)
    return run_from_args(p.parse_args(argv))


if __name__ == "__main__":
    from cvg_fast.errors import run_main

    sys.exit(run_main(_main))
