"""Memory of one training step vs output length: the cascade against one big model (Fig. 3).

Why: the paper's claim is that a cascade's training memory stops growing with the
video length at its upscaling levels (they train on fixed temporal windows), so only
the small level 1 pays for length, while a non-cascaded generator at the top
resolution pays for every frame at full size.

What is counted, per level, for ONE step of `cvg_fast.training.trainer` (D update on
[real; fake] with the fake detached, then G update through D):

* activations: bytes of every tensor autograd saves for backward, counted exactly by
  `torch.autograd.graph.saved_tensors_hooks`, each storage once (a view or a tensor
  saved twice counts once). Storages of parameters and buffers are NOT counted here
  (they are in `params`); weight-sized intermediates such as spectral norm's W/sigma
  ARE counted (the graph holds them). The G update (G forward + D forward on the fake)
  and the D update (D on [real; fake]) are measured apart; `activations` is their max
  (the first graph is freed before the second is built). Transient tensors that are
  never saved (frozen levels run without grad, no_grad samples) are not counted.
* params / grads / optimizer: fp32 bytes of the trained G and D, one gradient each,
  Adam's two moments; `frozen`: parameter bytes of the lower levels (no grads, no state).

Everything runs under torch's FakeTensorMode: shapes and dtypes only, no data, so the
numbers are exact, device independent and take seconds even for 192 frames at 128px.
(The `meta` device cannot run these models: spectral norm opens `torch.autocast` on the
weight's device, which has no meta variant; fake tensors report `cpu` and work.)
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
import torch.nn as nn

from cvg_fast.config import CascadeConfig, LevelConfig
from cvg_fast.errors import CvgError
from cvg_fast.training.losses import d_loss, g_loss

MB = 2 ** 20  # MB and GB below are binary: 2^20 and 2^30 bytes
GB = 2 ** 30
DEFAULT_FRAMES = (12, 24, 48, 96, 192)
PAPER_ANCHOR = ("paper (Fig. 3): level 2 of the Kinetics-600 model fixed at 10,290 MB with "
                "6-frame windows; about 140 vs about 60 frames at equal memory "
                "(cascade vs non-cascaded)")


def _storage_key(t: torch.Tensor) -> int:
    """Identity of t's storage (shared by all its views); works for fake and real tensors."""
    return t.untyped_storage()._cdata


class SavedTensorCounter:
    """Context manager: bytes of the storages autograd saves for backward while it is open.

    Each storage counts once (whole storage, `untyped_storage().nbytes()`), so views and
    tensors saved by several ops are not double counted. Storages of `exclude` (tensors,
    e.g. parameters) are left out. The packed tensors stay referenced by the graph while it
    lives, so storage identities cannot be reused during the count.
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()):
        self.excluded = {_storage_key(t) for t in exclude}
        self.storages: dict[int, int] = {}  # storage key -> bytes
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in self.excluded:
            self.storages[key] = t.untyped_storage().nbytes()
        return t

    @property
    def bytes(self) -> int:
        return sum(self.storages.values())

    def __enter__(self) -> "SavedTensorCounter":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


def module_tensors(*modules: nn.Module) -> list[torch.Tensor]:
    """Parameters and buffers of `modules` (what SavedTensorCounter should exclude)."""
    return [t for m in modules for t in (*m.parameters(), *m.buffers())]


def param_bytes(*modules: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for m in modules for p in m.parameters())


@dataclass
class StepMemory:
    """Bytes of one training step of one level (see the module docstring)."""

    level: int
    frames: int  # frames of the clip this level's G makes in one step
    size: int
    activations_g: int  # saved by the G update's forward (G, then D on the fake)
    activations_d: int  # saved by the D update's forward (D on [real; fake])
    params: int  # trained G + D, fp32
    grads: int
    optimizer: int  # Adam: 2 moments per parameter
    frozen: int  # parameters of the frozen lower levels

    @property
    def activations(self) -> int:
        return max(self.activations_g, self.activations_d)

    @property
    def total(self) -> int:
        return self.activations + self.params + self.grads + self.optimizer + self.frozen

    def to_dict(self) -> dict:
        return asdict(self) | {"activations": self.activations, "total": self.total}


@contextmanager
def _fake_mode() -> Iterator[None]:
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        yield


def _num_classes(cfg: CascadeConfig) -> int:
    return max(cfg.num_classes, 0)  # -1 (from the data) counts as unconditional here


def measure_step(cfg: CascadeConfig, level: int, batch_size: int = 1,
                 frozen_levels: int | None = None) -> StepMemory:
    """Memory of one training step of `level` (1-based) of `cfg`, on fake tensors.

    Level 1 makes `cfg.levels[0].frames` frames (the plain unroll, no rollout offset).
    Level L > 1 trains on a window of `cfg.window(L)` input frames (N, w, 3, s, s) ->
    (N, w*tf, 3, S, S); its input comes from the frozen levels below without grad, so
    only their parameters count (`frozen_levels`, default L - 1 of them, built from `cfg`).
    """
    from cvg_fast.models import build_discriminator, build_generator

    nc, n, lv = _num_classes(cfg), batch_size, cfg.levels[level - 1]
    with _fake_mode():
        G = build_generator(cfg, level, nc)
        D = build_discriminator(cfg, level, nc)
        lower = [build_generator(cfg, k, nc) for k in range(1, level)]
        if frozen_levels is not None:
            lower = lower[:frozen_levels]
        y = torch.zeros(n, dtype=torch.long) if nc > 0 else None
        yy = torch.cat([y, y]) if y is not None else None
        if level == 1:
            t = lv.frames
            z = torch.randn(n, cfg.z_dim)
            e = torch.randn(n, t, cfg.z_t_dim) if cfg.z_t_dim else None
            x_low, real_low = None, None

            def fake():
                return G(z, y, frames=t, frame_noise=e)
        else:
            w, tf, s = cfg.window(level), cfg.t_factor(level), cfg.levels[level - 2].size
            t = w * tf
            x_low, real_low = torch.randn(n, w, 3, s, s), torch.randn(n, w, 3, s, s)
            noise = torch.randn(n, t, cfg.z_ch, s, s)

            def fake():
                return G(x_low, noise, y)
        real = torch.randn(n, t, 3, lv.size, lv.size)
        exclude = module_tensors(G, D)
        G.train()
        D.train().requires_grad_(True)

        # D update: G's sample without grad, D on [real; fake]
        with torch.no_grad():
            x_fake = fake()
        with SavedTensorCounter(exclude) as cd:
            scores = D(torch.cat([real, x_fake]),
                       None if x_low is None else torch.cat([real_low, x_low]), yy)
            loss_d = d_loss({k: v[:n].float() for k, v in scores.items()},
                            {k: v[n:].float() for k, v in scores.items()}, cfg.train.loss,
                            log=False)[0]
        del scores, loss_d, x_fake

        # G update: G forward, then D (frozen weights) on the fake
        D.requires_grad_(False)
        with SavedTensorCounter(exclude) as cg:
            loss_g = g_loss(D(fake(), x_low, y), cfg.train.loss, log=False)[0]
        del loss_g
        trained = param_bytes(G, D)
        return StepMemory(level=level, frames=t, size=lv.size, activations_g=cg.bytes,
                          activations_d=cd.bytes, params=trained, grads=trained,
                          optimizer=2 * trained, frozen=param_bytes(*lower))


def level1_config(cfg: CascadeConfig, frames: int) -> CascadeConfig:
    """`cfg` with level 1 making `frames` frames (level 1 only: the others are untouched)."""
    c = cfg.copy()
    c.levels[0].frames = frames
    return c


def non_cascaded_config(cfg: CascadeConfig, frames: int) -> CascadeConfig:
    """One level-1 style model at the top level's size and `frames` frames, level 1's widths."""
    c = cfg.copy()
    lv1, top = c.levels[0], c.levels[-1]
    c.levels = [LevelConfig(frames=frames, size=top.size, g_ch=lv1.g_ch, d_ch=lv1.d_ch,
                            d_frames=lv1.d_frames)]
    return c


def _fit_line(xs: list[int], ys: list[int]) -> tuple[float, float]:
    """Least squares y = a + b x."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return my - b * mx, b


def _frames_within(a: float, b: float, budget: float) -> float:
    """Largest F with a + b F <= budget (inf if it never grows, 0 if not even F = 0 fits)."""
    if a > budget:
        return 0.0
    return math.inf if b <= 0 else (budget - a) / b


def check_inputs(frames: list[int], batch_size: int, budget_gb: float) -> None:
    if not frames or any(not isinstance(f, int) or f < 1 for f in frames):
        raise CvgError(f"--frames must be positive integers, e.g. 12,24,48 (got {frames})")
    if batch_size < 1:
        raise CvgError(f"--batch-size must be >= 1 (got {batch_size})")
    if not budget_gb > 0:
        raise CvgError(f"--budget-gb must be > 0 (got {budget_gb})")


def parse_frames(text: str) -> list[int]:
    """'12,24,48' -> [12, 24, 48]; a one-line CvgError for anything else."""
    try:
        frames = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise CvgError(f"--frames must be comma-separated positive integers, e.g. 12,24,48 "
                       f"(got {text!r})") from None
    if not frames or min(frames) < 1:
        raise CvgError(f"--frames must be comma-separated positive integers, e.g. 12,24,48 "
                       f"(got {text!r})")
    return sorted(set(frames))


@dataclass
class MemoryStudy:
    """Cascade vs non-cascaded step memory at each output length (bytes); see memory_study."""

    preset: str
    batch_size: int
    budget_gb: float
    frames: list[int]
    total_t_factor: int
    levels: dict[int, list[StepMemory]]  # cascade level -> one entry per output length
    non_cascaded: list[StepMemory]
    fit: dict = field(default_factory=dict)

    def cascade_total(self, i: int) -> int:
        """Levels train one at a time: the step memory is the largest level's."""
        return max(rows[i].total for rows in self.levels.values())

    def to_dict(self) -> dict:
        return {
            "preset": self.preset, "batch_size": self.batch_size, "budget_gb": self.budget_gb,
            "frames": self.frames, "total_t_factor": self.total_t_factor, "units": "bytes",
            "cascade_total": [self.cascade_total(i) for i in range(len(self.frames))],
            "levels": {str(k): [r.to_dict() for r in v] for k, v in self.levels.items()},
            "non_cascaded": [r.to_dict() for r in self.non_cascaded],
            "fit": _finite(self.fit), "paper": PAPER_ANCHOR,
            "counted": "saved activations (max of G and D update) + trained params, grads, "
                       "Adam state (fp32) + frozen lower levels' params; fake tensors",
        }


def _finite(v):
    """JSON has no infinity: an unbounded frame count is written as null."""
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    return None if isinstance(v, float) and math.isinf(v) else v


def memory_study(cfg: CascadeConfig, frames: list[int], batch_size: int = 1,
                 budget_gb: float = 16.0,
                 progress: Callable[[str], None] | None = None) -> MemoryStudy:
    """Step memory of each cascade level and of one non-cascaded model per output length.

    For top-level output length F: level 1 makes ceil(F / prod(t_factors)) frames at its
    size; upscalers train on their fixed window (independent of F, measured once); the
    non-cascaded model is a Level1Generator making F frames at the top size.
    Frames within the budget: a line a + b F fitted (least squares) to each measured
    series; the cascade fits while every level does (upscalers are constant).
    """
    check_inputs(frames, batch_size, budget_gb)
    tf = 1
    for level in range(2, cfg.num_levels + 1):
        tf *= cfg.t_factor(level)
    say = progress or (lambda msg: None)
    levels: dict[int, list[StepMemory]] = {1: []}
    for f in frames:
        say(f"level 1: {math.ceil(f / tf)} frames")
        levels[1].append(measure_step(level1_config(cfg, math.ceil(f / tf)), 1, batch_size))
    for level in range(2, cfg.num_levels + 1):
        say(f"level {level}: window of {cfg.window(level)} input frames")
        levels[level] = [measure_step(cfg, level, batch_size)] * len(frames)
    non = []
    for f in frames:
        say(f"non-cascaded: {f} frames at {cfg.levels[-1].size}px")
        non.append(measure_step(non_cascaded_config(cfg, f), 1, batch_size))
    study = MemoryStudy(cfg.name, batch_size, budget_gb, list(frames), tf, levels, non)

    budget = budget_gb * GB
    a1, b1 = _fit_line(frames, [r.total for r in levels[1]])
    an, bn = _fit_line(frames, [r.total for r in non])
    upper = max((levels[k][0].total for k in levels if k > 1), default=0)
    fit_cascade = _frames_within(a1, b1, budget) if upper <= budget else 0.0
    # the paper's comparison: at the memory the upscaler needs anyway, how long can each go?
    at_top = {"memory": upper, "cascade": _frames_within(a1, b1, upper) if upper else None,
              "non_cascaded": _frames_within(an, bn, upper) if upper else None}
    study.fit = {"method": "least-squares line a + b*F per series; cascade = level 1's line "
                           "while the constant upscaler levels fit",
                 "level1": {"a": a1, "b": b1}, "non_cascaded": {"a": an, "b": bn},
                 "frames_in_budget": {"cascade": fit_cascade,
                                      "non_cascaded": _frames_within(an, bn, budget)},
                 "at_top_level_memory": at_top}
    return study


def _mb(b: float) -> str:
    return f"{b / MB:,.0f}"


def _frames_text(f: float | None) -> str:
    if f is None:
        return "-"
    return "unbounded" if math.isinf(f) else f"{f:,.0f}"


def format_report(study: MemoryStudy) -> str:
    """Aligned table (MB = 2^20 bytes) plus the budget extrapolation and the paper's anchor."""
    heads = ["frames"] + [f"L{k} act" for k in study.levels] + [
        "cascade total", "non-casc act", "non-casc total"]
    rows = []
    for i, f in enumerate(study.frames):
        rows.append([str(f)] + [_mb(study.levels[k][i].activations) for k in study.levels] + [
            _mb(study.cascade_total(i)), _mb(study.non_cascaded[i].activations),
            _mb(study.non_cascaded[i].total)])
    widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(heads)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    out = [f"cvg memory: preset {study.preset!r}, batch size {study.batch_size}, one training "
           f"step (MB = 2^20 bytes)", line(heads), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    fit = study.fit
    fib, top = fit["frames_in_budget"], fit["at_top_level_memory"]
    out.append("L<k> act: saved activations of level k's step (its window for upscalers, "
               "constant in the output length); totals add params, grads, Adam state and "
               "frozen levels")
    out.append(f"frames that fit in {study.budget_gb:g} GB (linear fit a + b*F to the measured "
               f"points): cascade {_frames_text(fib['cascade'])}, non-cascaded "
               f"{_frames_text(fib['non_cascaded'])}")
    if top["memory"]:
        out.append(f"at the upscaler's fixed {_mb(top['memory'])} MB: cascade "
                   f"{_frames_text(top['cascade'])} frames, non-cascaded "
                   f"{_frames_text(top['non_cascaded'])} frames")
    out.append(PAPER_ANCHOR)
    out.append("ours: activations + params + grads + Adam state of OUR models at batch size "
               f"{study.batch_size}, not the paper's GPU peak")
    return "\n".join(out)


_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (148, 103, 189), (140, 86, 75)]


def draw_plot(study: MemoryStudy, path: Path) -> None:
    """PNG (Pillow only): total MB vs output frames per series, budget as a dashed line."""
    from PIL import Image, ImageDraw

    series = [("cascade total", [study.cascade_total(i) for i in range(len(study.frames))],
               (0, 0, 0))]
    for k, rows in study.levels.items():
        series.append((f"cascade level {k}", [r.total for r in rows], _COLOURS[(k - 1) % 5]))
    series.append(("non-cascaded", [r.total for r in study.non_cascaded], (214, 39, 40)))
    budget = study.budget_gb * GB
    w, h, left, right, top, bottom = 800, 520, 80, 20, 40, 60
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    xs = study.frames
    x_max = max(xs)
    y_max = max(max(v for _, vals, _ in series for v in vals), budget) / MB * 1.05
    px = lambda f: left + (w - left - right) * f / x_max  # noqa: E731
    py = lambda b: h - bottom - (h - top - bottom) * (b / MB) / y_max  # noqa: E731
    d.rectangle([left, top, w - right, h - bottom], outline=(0, 0, 0))
    step = 10 ** max(int(math.log10(y_max / 5)), 0)
    step *= next(m for m in (1, 2, 5, 10) if y_max / (step * m) <= 8)
    for k in range(int(y_max // step) + 1):
        y = py(k * step * MB)
        d.line([left - 4, y, left, y], fill=(0, 0, 0))
        d.line([left + 1, y, w - right - 1, y], fill=(230, 230, 230))
        d.text((4, y - 6), f"{k * step:,.0f}", fill=(0, 0, 0))
    for f in xs:
        d.line([px(f), h - bottom, px(f), h - bottom + 4], fill=(0, 0, 0))
        d.text((px(f) - 8, h - bottom + 8), str(f), fill=(0, 0, 0))
    d.text((w // 2 - 60, h - 24), "output frames (top level)", fill=(0, 0, 0))
    d.text((4, 12), f"MB per training step, {study.preset}, batch {study.batch_size}",
           fill=(0, 0, 0))
    yb = py(budget)
    for x0 in range(left, w - right, 12):
        d.line([x0, yb, min(x0 + 6, w - right), yb], fill=(120, 120, 120), width=2)
    d.text((w - right - 120, yb - 14), f"budget {study.budget_gb:g} GB", fill=(90, 90, 90))
    for i, (name, vals, colour) in enumerate(series):
        pts = [(px(f), py(v)) for f, v in zip(xs, vals)]
        d.line(pts, fill=colour, width=6 if i == 0 else 2)  # the total wide, under its level
        for x, y in pts:
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    for i, (name, _, colour) in enumerate(series):  # legend, top left inside the axes
        y = top + 10 + 16 * i
        d.rectangle([left + 8, y - 6, left + 170, y + 8], fill="white")
        d.line([left + 12, y + 1, left + 32, y + 1], fill=colour, width=3)
        d.text((left + 38, y - 5), name, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def write_study(study: MemoryStudy, out: str | Path) -> tuple[Path, Path]:
    """memory_<preset>.png and memory_<preset>.json (atomic) in `out`; their paths."""
    from cvg_fast.models.checkpoint import atomic_write_bytes

    out = Path(out)
    png, js = out / f"memory_{study.preset}.png", out / f"memory_{study.preset}.json"
    draw_plot(study, png)
    text = json.dumps(study.to_dict(), indent=2, default=str).encode()
    atomic_write_bytes(js, lambda f: f.write(text))
    return png, js
