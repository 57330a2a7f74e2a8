"""Gradient averaging that overlaps backward: bucketed all-reduces launched from hooks.

Why: `distributed.average_gradients` waits for the whole backward, then sends every
gradient; the network idles during the all-reduce. Here each parameter's
post-accumulate-grad hook marks it ready; when a bucket (about `bucket_mb` MB of
gradients, in reverse registration order, i.e. roughly the order backward produces them)
is complete it is flattened and its all-reduce starts asynchronously (NCCL on its own
stream, gloo on its own thread) while backward carries on with earlier layers. DDP does
the same, but its reducer assumes one forward per backward, where a GAN step runs G and D
forward several times and freezes each in turn (`distributed.py`).

Buckets start strictly in index order, so every process issues the same collectives in
the same order whatever order its hooks fire in. A parameter whose gradient never
arrives in a backward (frozen, unused) is sent as zeros when `finish` flushes the rest,
as the flat path would skip it on every process alike. The averages are the flat path's
exactly: a sum of the same per-process values, divided by the world size.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn


def grad_sync_mode(requested: str, device: torch.device, world: int) -> str | None:
    """The averaging a run uses: "overlap", "flat", or None (one process: nothing to average).

    "auto" is overlap on CUDA (NCCL runs on its own stream, beside backward's kernels) and
    flat elsewhere: on CPU, gloo's thread takes cores from backward, and overlap measured
    0.997x (L1) and 0.986x (L2) of flat's speed (tiny, 2 processes on 2 cores:
    bench/results/grad_sync_tiny_L*_cpu_w2.json): no gain for the extra machinery.
    """
    if requested not in ("auto", "overlap", "flat"):
        raise ValueError(f"grad_sync must be 'auto', 'overlap' or 'flat' (got {requested!r})")
    if world <= 1:
        return None
    if requested == "auto":
        return "overlap" if torch.device(device).type == "cuda" else "flat"
    return requested


class OverlappedGradSync:
    """Average `module`'s gradients across `world` processes during its backward.

    Use: `loss.backward()` then `mean = sync.finish(extra=loss.detach())` (the extra
    averaged, like `average_gradients`). With world == 1 no hook is installed and
    `finish` returns `extra` as given. Call `close()` to remove the hooks.
    """

    def __init__(self, module: nn.Module, world: int, bucket_mb: float = 25.0):
        self.world = world
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.buckets: list[list[int]] = []  # parameter indices, backward order
        self._handles = []
        if world == 1:
            return
        limit, size = bucket_mb * 2**20, 0.0
        for i in reversed(range(len(self.params))):  # last layers' gradients come first
            if not self.buckets or size >= limit:
                self.buckets.append([])
                size = 0.0
            self.buckets[-1].append(i)
            size += self.params[i].numel() * self.params[i].element_size()
        self._bucket_of = {i: b for b, idx in enumerate(self.buckets) for i in idx}
        for i, p in enumerate(self.params):
            self._handles.append(p.register_post_accumulate_grad_hook(
                lambda _p, i=i: self._ready(i)))
        self._reset()

    def _reset(self) -> None:
        self._pending = [len(b) for b in self.buckets]
        self._next = 0  # the next bucket to launch (index order)
        self._works: list[tuple[torch.Tensor, object]] = []

    def _ready(self, i: int) -> None:
        b = self._bucket_of[i]
        self._pending[b] -= 1
        while self._next < len(self.buckets) and self._pending[self._next] == 0:
            self._launch(self._next)
            self._next += 1

    def _launch(self, b: int) -> None:
        parts = []
        for i in self.buckets[b]:
            p = self.params[i]
            parts.append(p.grad.reshape(-1) if p.grad is not None
                         else torch.zeros(p.numel(), device=p.device, dtype=p.dtype))
        flat = torch.cat(parts)
        self._works.append((flat, dist.all_reduce(flat, async_op=True)))

    def finish(self, extra: torch.Tensor | None = None) -> torch.Tensor | None:
        """Wait for the buckets (sending those not yet complete), write the averages into
        .grad, and return `extra` averaged across processes (None if not given)."""
        if self.world == 1:
            return extra
        while self._next < len(self.buckets):  # gradients that never arrived: zeros
            self._launch(self._next)
            self._next += 1
        mean = None
        if extra is not None:
            e = extra.detach().reshape(-1).float().clone()
            dist.all_reduce(e)
            mean = (e / self.world).view_as(extra).to(extra.dtype)
        for b, (flat, work) in enumerate(self._works):
            work.wait()
            flat /= self.world
            offset = 0
            for i in self.buckets[b]:
                p = self.params[i]
                if p.grad is not None:
                    p.grad.copy_(flat[offset: offset + p.numel()].view_as(p.grad))
                offset += p.numel()
        self._reset()
        return mean

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
