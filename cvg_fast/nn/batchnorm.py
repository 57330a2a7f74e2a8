"""Batch norm whose statistics span every process, and its class-conditional form.

Under DDP each process sees batch/world videos; the generator's BN must
normalise with statistics of the whole global batch. torch.nn.SyncBatchNorm
only runs on CUDA tensors, so the CPU/gloo path all-reduces (sum, sum of
squares, count) itself with a differentiable all-reduce (`_AllReduceSum`; torch's
`torch.distributed.nn.functional.all_reduce` does the same but warns that it is
deprecated on every call); on CUDA under a process group
the same code runs over NCCL. With one process it is plain `F.batch_norm`.

Works on any (N, C, *) input: (N, C, H, W) frames or (N, C, T, H, W) clips.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn


def sync_world_size() -> int:
    """Processes SyncBatchNorm averages over: the default process group's (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; its gradient is the sum of every process's gradient (each
    process's input reaches every process's output)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


class SyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm over (N, C, *) with statistics all-reduced across processes.

    `momentum=None` gives a cumulative average (used for standing statistics).
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"SyncBatchNorm expects (N, C, *), got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not self.training or sync_world_size() == 1:
            # BatchNorm2d's forward takes any (N, C, *) once the dim check is relaxed.
            return super().forward(x)
        return self._synced(x)

    def _synced(self, x: torch.Tensor) -> torch.Tensor:
        dims = [0] + list(range(2, x.dim()))
        xf = x.float()
        count = torch.tensor([x.numel() / x.shape[1]], device=x.device, dtype=torch.float32)
        stats = torch.cat([xf.sum(dims), (xf * xf).sum(dims), count])
        stats = _AllReduceSum.apply(stats)
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                unbiased = var * (n / (n - 1).clamp_min(1))
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased.detach(), alpha=m)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


class ConditionalBatchNorm(nn.Module):
    """BN whose gain and bias come from the class label (plain affine BN if unconditional).

    x: (N, C, *), y: (N,) int64 or None. Gains start at 1, biases at 0.
    """

    def __init__(self, channels: int, num_classes: int = 0):
        super().__init__()
        self.num_classes = num_classes
        self.bn = SyncBatchNorm(channels, affine=num_classes == 0)
        if num_classes > 0:
            self.gain = nn.Embedding(num_classes, channels)
            self.bias = nn.Embedding(num_classes, channels)
            nn.init.ones_(self.gain.weight)
            nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes == 0:
            return self.bn(x)
        if y is None:
            raise ValueError("this model is class-conditional: pass class labels y")
        shape = [x.shape[0], x.shape[1]] + [1] * (x.dim() - 2)
        bn = self.bn
        if not bn.training and bn.running_mean is not None and torch.is_inference_mode_enabled():
            # sampling (eval, inference mode): normalise and condition in ONE pass,
            # x * (gain * rstd) + (bias - mean * gain * rstd) per row and channel, instead
            # of batch_norm, then *, then + over the whole activation; in x's dtype (bf16
            # under autocast: no fp32 activation for the ReLU and the next conv's cast)
            scale = self.gain(y).float() * torch.rsqrt(bn.running_var.float() + bn.eps)
            shift = self.bias(y).float() - bn.running_mean.float() * scale
            return torch.addcmul(shift.view(shape).to(x.dtype), x, scale.view(shape).to(x.dtype))
        out = bn(x)
        return out * self.gain(y).view(shape) + self.bias(y).view(shape)


def standing_statistics(model: nn.Module):
    """Context: recompute every BN's running statistics as a plain average.

    Inside, only the BN layers are in train mode (spectral-norm u, v and all
    else stay frozen, so training state is untouched) and their momentum is
    None (cumulative average); run the model on a few batches. On exit the
    model is in eval mode with BigGAN-style "standing statistics": generators
    sample in eval mode, so a video does not depend on the batch it shares.
    """
    import contextlib

    @contextlib.contextmanager
    def ctx():
        bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        saved = [m.momentum for m in bns]
        model.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        try:
            yield
        finally:
            for m, mom in zip(bns, saved):
                m.momentum = mom
            model.eval()

    return ctx()
