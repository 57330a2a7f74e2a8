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


def average_gradients(module: nn.Module, world: int) -> None:
    """Average .grad over processes with one coalesced all-reduce."""
    if world == 1:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_module(module: nn.Module, world: int) -> None:
    """Make every process hold rank 0's parameters and buffers."""
    if world == 1:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def check_consistent(module: nn.Module, world: int, name: str) -> None:
    """Raise if processes hold different weights (a silent DDP bug otherwise)."""
    if world == 1:
        return
    with torch.no_grad():
        total = torch.stack([p.double().sum() for p in module.parameters()]).sum().reshape(1)
        gathered = [torch.zeros_like(total) for _ in range(world)]
        dist.all_gather(gathered, total)
    values = [float(g) for g in gathered]
    if max(values) - min(values) > 1e-6 * max(1.0, abs(values[0])):
        raise RuntimeError(f"{name}: weights differ across processes: {values}")


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
