"""Per-op speed of the fused kernels against eager PyTorch and torch.compile, with bandwidth.

`cvg bench train` prints this table under the whole-step one. Each op runs at the shapes a
preset's level-1 training step gives it, in the step's precision:

    gru pointwise   the four ConvGRU kernels of one step, forward + backward (reset, update,
                    update_bwd, reset_bwd) vs the same math as eager torch ops with autograd,
                    vs that eager function under torch.compile
    gru sequence    a whole ConvGRU layer, forward + backward (convs included): fused
                    sequence vs the reference step loop vs the loop of a compiled cell
    pyramid         every pyramid view of the top clip's frames (bf16 in, fp32 math)

GB/s is the op's minimum traffic (each input read once, each output written once) divided
by its time, the same byte count for every column, next to a STREAM-style copy (a 256 MB
`copy_`) measured in the same run: "% copy" says how close an op comes to the machine's
memory bandwidth. Timings are medians of repeated runs after warm-up.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from cvg_fast.config import CascadeConfig
from cvg_fast.ops import backends


@dataclass
class OpRow:
    """One op: ms per call of each variant (None: not run, with the reason in `notes`)."""

    op: str
    shape: str
    dtype: str
    bytes: int  # minimum traffic of one call
    fused_ms: float | None = None
    eager_ms: float | None = None
    compile_ms: float | None = None
    fused_backend: str = ""
    notes: str = ""

    def gbps(self, ms: float | None) -> float | None:
        return None if not ms or not self.bytes else self.bytes / ms / 1e6


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device, warmup: int = 3,
            repeats: int = 7, inner: int = 3) -> float:
    """Median over `repeats` of the mean time of `inner` back-to-back calls, in ms."""
    for _ in range(warmup):
        fn()
    _sync(device)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        _sync(device)
        samples.append((time.perf_counter() - t0) / inner * 1e3)
    return statistics.median(samples)


def stream_copy_gbps(device: torch.device, megabytes: int = 256) -> float:
    """Bandwidth of a large tensor copy (read + write counted), GB/s."""
    n = megabytes * 2**20 // 4
    src = torch.ones(n, device=device)
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), device, warmup=2, repeats=5, inner=2)
    return 2 * src.numel() * 4 / ms / 1e6


def _gru_pointwise_eager(g_x, g_h, n_x, n_h, h):
    """The four kernels' math as eager ops (fp32 inside, like the kernels): (r*h, h')."""
    c = h.shape[1]
    g = g_x.float() + g_h.float()
    r, z = torch.sigmoid(g[:, :c]), torch.sigmoid(g[:, c:])
    hf = h.float()
    rh = (r * hf).to(h.dtype)
    n = torch.tanh(n_x.float() + n_h.float())
    return rh, (hf + z * (n - hf)).to(h.dtype)


def _gru_pointwise_fused(kern, g_x, g_h, n_x, n_h, h, d_hnew, d_rh):
    rh = kern.gru_reset_fwd(g_x, g_h, h)
    h_new = kern.gru_update_fwd(g_x, g_h, n_x, n_h, h)
    d_g = torch.empty_like(g_x)
    d_n, d_h = kern.gru_update_bwd(d_hnew, g_x, g_h, n_x, n_h, h, d_g)
    kern.gru_reset_bwd(d_rh, g_x, g_h, h, d_g, d_h)
    return rh, h_new, d_g, d_n, d_h


def _level1_gru_shape(cfg: CascadeConfig, batch: int) -> tuple[int, int, int, int]:
    """(N, T, C, S) of level 1's last ConvGRU (ConvGRU k runs at 4 * 2^k pixels): the
    largest map, the most pointwise work."""
    from cvg_fast.models import build_generator

    g = build_generator(cfg, 1, 0)
    return batch, cfg.levels[0].frames, g.grus[-1].hid_ch, 4 * 2 ** (len(g.grus) - 1)


def bench_ops(cfg: CascadeConfig, batch_size: int, device: torch.device, amp: str,
              channels_last: bool = True, compile: bool = True,
              log: Callable[[str], None] | None = None) -> tuple[list[OpRow], float]:
    """The per-op rows and the STREAM copy GB/s, for level 1 of `cfg` at `batch_size`."""
    say = log or (lambda s: None)
    dtype = torch.bfloat16 if amp == "bf16" else torch.float32
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    rows: list[OpRow] = []
    copy_gbps = stream_copy_gbps(device)
    n, t, c, s = _level1_gru_shape(cfg, batch_size)
    torch.manual_seed(0)

    def act(ch):
        return torch.randn(n, ch, s, s, device=device).to(dtype).contiguous(memory_format=fmt)

    g_x, g_h, n_x, n_h, h, d_hnew, d_rh = act(2 * c), act(2 * c), act(c), act(c), act(c), \
        act(c), act(c)
    elems = n * c * s * s
    itemsize = torch.finfo(dtype).bits // 8
    row = OpRow("gru pointwise fwd+bwd", f"N{n} C{c} {s}x{s}", str(dtype).replace("torch.", ""),
                bytes=26 * elems * itemsize)
    impl = backends.resolve_backend("gru_cell", device)
    row.fused_backend = impl
    say(f"  op gru pointwise ({row.shape}, {row.dtype}) ...")
    if impl != "reference":
        from cvg_fast.ops.gru_cell import _kernels

        kern = _kernels(impl)
        row.fused_ms = time_ms(lambda: _gru_pointwise_fused(kern, g_x, g_h, n_x, n_h, h,
                                                            d_hnew, d_rh), device)
    else:
        row.notes = "no fused backend on this device"

    leaves = [x.detach().requires_grad_(True) for x in (g_x, g_h, n_x, n_h, h)]

    def eager_step(fn):
        def run():
            rh, h_new = fn(*leaves)
            torch.autograd.backward([rh, h_new], [d_rh, d_hnew])
            for x in leaves:
                x.grad = None
        return run

    row.eager_ms = time_ms(eager_step(_gru_pointwise_eager), device)
    if compile:
        compiled = torch.compile(_gru_pointwise_eager, dynamic=False)
        row.compile_ms = _timed_compile(lambda: time_ms(eager_step(compiled), device), row)
    rows.append(row)

    rows.append(_bench_sequence(n, t, c, s, dtype, fmt, device, compile, say))
    rows.append(_bench_pyramid(cfg, batch_size, device, compile, say))
    return rows, copy_gbps


def _timed_compile(run: Callable[[], float], row: OpRow) -> float | None:
    try:
        return run()
    except Exception as e:  # a compile failure is reported in the table, not fatal
        row.notes = f"compile failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
        return None


def _bench_sequence(n, t, c, s, dtype, fmt, device, compile, say) -> OpRow:
    from cvg_fast.ops import gru_cell_reference, gru_sequence

    say(f"  op gru sequence (N{n} T{t} C{c} {s}x{s}) ...")
    row = OpRow("gru sequence fwd+bwd", f"N{n} T{t} C{c} {s}x{s}",
                str(dtype).replace("torch.", ""), bytes=0,
                notes="convs included: ms only")
    cl = fmt == torch.channels_last

    def video(ch):
        v = torch.randn(n, t, ch, s, s, device=device).to(dtype)
        return (v.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3) if cl else v)

    xg, xn = video(2 * c).requires_grad_(True), video(c).requires_grad_(True)
    h0 = torch.zeros(n, c, s, s, device=device, dtype=dtype).contiguous(memory_format=fmt)
    w_g = (torch.randn(2 * c, c, 3, 3, device=device) * 0.05).requires_grad_(True)
    w_n = (torch.randn(c, c, 3, 3, device=device) * 0.05).requires_grad_(True)
    w_g_c, w_n_c = w_g.detach().to(dtype), w_n.detach().to(dtype)
    leaves = (xg, xn, w_g, w_n)

    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)

    def run(backend=None, cell=None):
        def go():
            with amp:
                out = forward(backend, cell)
            out.float().sum().backward()
            for x in leaves:
                x.grad = None
        return go

    def forward(backend, cell):
        if cell is None:
            return gru_sequence(xg, xn, h0, w_g, w_n, 1, backend=backend, w_g_c=w_g_c,
                                w_n_c=w_n_c, channels_last=cl)
        h, hs = h0, []
        for step in range(t):
            h = cell(xg[:, step], xn[:, step], h, w_g_c, w_n_c)
            hs.append(h)
        return torch.stack(hs, 1)

    impl = backends.resolve_backend("gru_cell", device)
    row.fused_backend = impl
    if impl != "reference":
        row.fused_ms = time_ms(run(impl), device, repeats=5, inner=1)
    row.eager_ms = time_ms(run("reference"), device, repeats=5, inner=1)
    if compile:
        def cell_ref(gx, nx, h, wg, wn):
            return gru_cell_reference(gx, nx, h, wg, wn, 1)

        compiled = torch.compile(cell_ref, dynamic=False)
        row.compile_ms = _timed_compile(
            lambda: time_ms(run(cell=compiled), device, repeats=5, inner=1), row)
    return row


def _bench_pyramid(cfg, batch_size, device, compile, say) -> OpRow:
    from cvg_fast.ops import pyramid_down, pyramid_down_reference

    top = cfg.levels[-1]
    levels = max(1, (top.size // cfg.levels[0].size).bit_length() - 1)
    b = batch_size * top.frames
    say(f"  op pyramid ({b} frames {top.size}px, {levels} levels) ...")
    x = torch.rand(b, 3, top.size, top.size, device=device).to(torch.bfloat16)
    out_elems = sum(b * 3 * (top.size >> k) ** 2 for k in range(1, levels + 1))
    row = OpRow("pyramid views", f"{b}x3x{top.size}x{top.size} -> {levels} levels", "bfloat16",
                bytes=(x.numel() + out_elems) * 2)
    impl = backends.resolve_backend("pyramid_down", device)
    row.fused_backend = impl
    if impl != "reference":
        row.fused_ms = time_ms(lambda: pyramid_down(x, levels, backend=impl), device)
    row.eager_ms = time_ms(lambda: pyramid_down_reference(x, levels, out_dtype=x.dtype), device)
    if compile:
        def eager(x):
            y, outs = x.float(), []
            for _ in range(levels):
                y = F.interpolate(y, scale_factor=0.5, mode="bilinear", antialias=True,
                                  align_corners=False)
                outs.append(y.to(x.dtype))
            return outs

        compiled = torch.compile(eager, dynamic=False)
        row.compile_ms = _timed_compile(lambda: time_ms(lambda: compiled(x), device), row)
    return row


def report(rows: list[OpRow], copy_gbps: float) -> list[str]:
    """Aligned table lines: ms, GB/s and % of the copy bandwidth per variant."""
    head = ("op", "shape", "dtype", "fused ms", "eager ms", "compile ms", "fused/eager",
            "fused/compile", "fused GB/s", "% copy")
    table = [head]

    def fmt(v, spec=".3f"):
        return "-" if v is None else format(v, spec)

    for r in rows:
        ratio_e = r.eager_ms / r.fused_ms if r.fused_ms and r.eager_ms else None
        ratio_c = r.compile_ms / r.fused_ms if r.fused_ms and r.compile_ms else None
        gb = r.gbps(r.fused_ms)
        table.append((r.op, r.shape, r.dtype, fmt(r.fused_ms), fmt(r.eager_ms),
                      fmt(r.compile_ms), fmt(ratio_e, ".2f") + ("x" if ratio_e else ""),
                      fmt(ratio_c, ".2f") + ("x" if ratio_c else ""), fmt(gb, ".1f"),
                      "-" if gb is None else f"{100 * gb / copy_gbps:.0f}%"))
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = [f"per-op (level-1 shapes; STREAM-style copy {copy_gbps:.1f} GB/s in this run)"]
    for i, row in enumerate(table):
        lines.append("  " + "  ".join(c.ljust(w) if j < 3 else c.rjust(w)
                                      for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    lines += [f"  {r.op}: {r.notes}" for r in rows if r.notes]
    return lines


def rows_to_dicts(rows: list[OpRow]) -> list[dict]:
    return [asdict(r) for r in rows]
