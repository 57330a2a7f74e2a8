"""Process-group set-up and the collective steps of data-parallel GAN training.

One code path for 1 CPU process, N gloo processes (torchrun on CPU) and N
NCCL processes (GPUs). Gradients are averaged with one flat all-reduce per
network after backward (as StyleGAN3 does) rather than DDP hooks: a GAN step
runs G and D forward several times per backward and freezes each in turn,
which DDP's reducer handles badly. BatchNorm statistics are synchronised by
`cvg_fast.nn.SyncBatchNorm`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group if launched by torchrun (WORLD_SIZE set), pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            from cvg_fast.errors import CvgError

            raise CvgError("--device cuda was asked for but no CUDA GPU is visible: use --device cpu")
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, dev)


def shutdown_distributed() -> None:
    """Barrier then destroy: without both, gloo runs may abort after finishing."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def average_gradients(module: nn.Module, world: int,
                      extra: torch.Tensor | None = None) -> torch.Tensor | None:
    """Average .grad over processes with one coalesced all-reduce.

    `extra` (a small float tensor, e.g. the loss) rides in the same all-reduce and comes
    back averaged (as given when world == 1): a NaN on one process is a NaN on all, so
    every process takes the same skip decision (`nonfinite.NonFiniteGuard`) for free.
    """
    if world == 1:
        return extra
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads and extra is None:
        return None
    parts = [g.reshape(-1) for g in grads]
    if extra is not None:
        parts.append(extra.detach().reshape(-1).to(grads[0].dtype if grads else extra.dtype))
    flat = torch.cat(parts)
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()
    if extra is None:
        return None
    return flat[offset:].view_as(extra).to(extra.dtype)


def broadcast_module(module: nn.Module, world: int) -> None:
    """Make every process hold rank 0's parameters and buffers."""
    if world == 1:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def fingerprint(module: nn.Module) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(names, float checksums (2 per float tensor: sum and a position-weighted sum, in
    float64), int checksums (2 per integer tensor, exact int64)) of every parameter and
    buffer: SN u/v, BN running statistics and num_batches_tracked included."""
    names, floats, ints, int_names = [], [], [], []
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            x = t.detach().reshape(-1)
            if t.is_floating_point():
                x = x.double()
                ramp = torch.linspace(1.0, 2.0, x.numel(), dtype=torch.float64, device=x.device)
                floats.append(torch.stack([x.sum(), (x * ramp).sum()]))
                names.append(name)
            else:
                x = x.long()
                ramp = torch.arange(1, x.numel() + 1, dtype=torch.int64, device=x.device)
                ints.append(torch.stack([x.sum(), (x * ramp).sum()]))
                int_names.append(name)
    dev = next(iter(module.parameters())).device
    f = torch.cat(floats) if floats else torch.zeros(0, dtype=torch.float64, device=dev)
    i = torch.cat(ints) if ints else torch.zeros(0, dtype=torch.int64, device=dev)
    return names + int_names, f, i


def first_difference(names: list[str], floats: list[torch.Tensor], ints: list[torch.Tensor],
                     rtol: float = 1e-6) -> str | None:
    """Compare per-process fingerprints (`fingerprint` of each rank, gathered): the first
    tensor that differs, with the values, or None. Floats agree to `rtol`; integer
    buffers must be equal."""
    n_float = floats[0].numel() // 2
    f = torch.stack([x.cpu() for x in floats]).view(len(floats), -1, 2)
    i = torch.stack([x.cpu() for x in ints]).view(len(ints), -1, 2)
    for k in range(f.shape[1]):
        col = f[:, k]
        tol = rtol * max(1.0, float(col.abs().max()))
        if float((col - col[0]).abs().max()) > tol:
            return f"{names[k]}: sums {[round(float(v), 9) for v in col[:, 0]]} per process"
    for k in range(i.shape[1]):
        col = i[:, k]
        if bool((col != col[0]).any()):
            return f"{names[n_float + k]}: sums {[int(v) for v in col[:, 0]]} per process"
    return None


def check_consistent(module: nn.Module, world: int, name: str) -> None:
    """Raise if processes hold different parameters or buffers (a silent bug otherwise:
    a rank whose BN statistics or SN vectors drifted samples differently)."""
    if world == 1:
        return
    names, f, i = fingerprint(module)
    gf = [torch.zeros_like(f) for _ in range(world)]
    gi = [torch.zeros_like(i) for _ in range(world)]
    dist.all_gather(gf, f)
    dist.all_gather(gi, i)
    diff = first_difference(names, gf, gi)
    if diff is not None:
        raise RuntimeError(f"{name}: weights differ across processes: {diff}")


def gather_ints(values: list[int], world: int) -> list[list[int]]:
    """Every process's `values` (same length on all), rank order; [values] when alone."""
    if world == 1:
        return [list(values)]
    t = torch.tensor(values, dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    out = [torch.zeros_like(t) for _ in range(world)]
    dist.all_gather(out, t)
    return [x.tolist() for x in out]


def launch_token() -> str:
    """A random token, the same on every process of this launch (rank 0's, broadcast at once:
    no rank is busy yet, so this collective cannot time out). Names this launch's files."""
    token = [os.urandom(8).hex()]
    if dist.is_available() and dist.is_initialized():
        dist.broadcast_object_list(token, src=0)
    return token[0]


def publish(path: os.PathLike, error: str | None = None) -> None:
    """Rank 0: tell the processes waiting in `wait_for` that its work is done (or failed,
    with `error`, one line). Atomic: a waiter never reads half a file."""
    from cvg_fast.models.checkpoint import atomic_write_bytes

    text = ("error\n" + error if error is not None else "ok\n").encode()
    atomic_write_bytes(Path(path), lambda f: f.write(text))


def wait_for(path: os.PathLike, what: str, poll_s: float = 0.5, note_every_s: float = 120.0,
             timeout_s: float | None = None) -> None:
    """Ranks > 0: wait until rank 0 `publish`es `path`, polling the file system.

    Why not a barrier: rank 0 may probe a dataset for longer than a collective's timeout
    (NCCL's default is 10 minutes; Kinetics has ~350k files). Waiting on a file has no
    such limit; a note goes to stderr every `note_every_s`. Raises CvgError with rank 0's
    message when rank 0 failed, and after `timeout_s` (None: no limit) without an answer.
    """
    import sys
    import time

    from cvg_fast.errors import CvgError

    path = Path(path)
    t0 = last_note = time.monotonic()
    while not path.exists():
        now = time.monotonic()
        if timeout_s is not None and now - t0 > timeout_s:
            raise CvgError(f"waited {now - t0:.0f}s for rank 0 to finish {what} ({path} never "
                           "appeared); is the run folder on a file system every node shares?")
        if now - last_note >= note_every_s:
            print(f"cvg_fast: still waiting for rank 0 to finish {what} "
                  f"({now - t0:.0f}s)", file=sys.stderr, flush=True)
            last_note = now
        time.sleep(poll_s)
    lines = path.read_text().splitlines()
    if lines and lines[0] == "error":
        raise CvgError(f"rank 0 failed {what}: {' '.join(lines[1:])}")
