"""Spectral-normalised layers with ONE power iteration per training step.

torch's `parametrizations.spectral_norm` runs a power iteration on every access
of `.weight`; inside an unrolled ConvGRU that is one per time step and W/sigma
is recomputed each step. Here the normalised weight is computed once per
`spectral_norm_step(model)` block (one generator or discriminator forward, the
whole sequence) and reused by every call inside it. Outside such a block each
forward computes it itself, exactly like torch's parametrization.

Numerics follow torch: u, v are updated in place without grad during training
(`u = normalize(W v)`, `v = normalize(W^T u)`), sigma = u . W v keeps its
gradient through W, and in eval mode u, v are frozen. Construction runs 15
power iterations, as torch does.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from cvg_fast.ops import sn_normalize

_EPS = 1e-12


class SpectralNormMixin:
    """Adds orthogonal init and `normalized_weight()` to a layer owning `weight` (dim 0 = outputs).

    Put it first in the bases (`class SNLinear(SpectralNormMixin, nn.Linear)`): it
    runs the layer's own __init__, then initialises W orthogonally, b to 0, u and v.
    """

    weight: torch.Tensor

    def __init__(self, *args, power_iterations: int = 15, **kwargs):
        super().__init__(*args, **kwargs)
        nn.init.orthogonal_(self.weight)
        if getattr(self, "bias", None) is not None:
            nn.init.zeros_(self.bias)
        w = self.weight.detach().flatten(1)
        u = F.normalize(w.new_empty(w.shape[0]).normal_(0, 1), dim=0, eps=_EPS)
        v = F.normalize(w.new_empty(w.shape[1]).normal_(0, 1), dim=0, eps=_EPS)
        self.register_buffer("sn_u", u)
        self.register_buffer("sn_v", v)
        self._sn_cached: torch.Tensor | None = None
        self._sn_eval: tuple[tuple, torch.Tensor] | None = None  # (key, W/sigma) in eval mode
        # W/sigma in the conv's dtype and memory format, made once per spectral_norm_step
        # block: {(dtype, format, grad enabled): tensor}, cleared with _sn_cached
        self._sn_casts: dict[tuple, torch.Tensor] = {}
        # the same for the eval-mode W/sigma, kept as long as _sn_eval (sampling makes
        # thousands of window calls: casting and reordering W once, not once per call)
        self._sn_eval_casts: dict[tuple, torch.Tensor] = {}
        with torch.no_grad():
            for _ in range(power_iterations):
                self._power_iteration(w)

    def _power_iteration(self, w: torch.Tensor) -> None:
        self.sn_u.copy_(F.normalize(torch.mv(w, self.sn_v), dim=0, eps=_EPS))
        self.sn_v.copy_(F.normalize(torch.mv(w.t(), self.sn_u), dim=0, eps=_EPS))

    def compute_normalized_weight(self) -> torch.Tensor:
        """W / sigma(W); updates u, v once when training (no grad through them).

        Always fp32, autocast or not: on CUDA `mv` is on autocast's bf16 list, and a
        bf16 sigma (8 bits of mantissa) would rescale every weight by up to 0.4%
        differently from step to step. The conv that uses W/sigma casts it itself
        (`compute_weight`). The op (`cvg_fast.ops.sn_normalize`) runs the iteration and
        sigma as one fused kernel where a backend has it.
        """
        return sn_normalize(self.weight, self.sn_u, self.sn_v, update=self.training, eps=_EPS)

    def compute_weight(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """W/sigma as the layer's conv wants it: in the autocast dtype under autocast, and in
        x's channels-last format when x (the conv input) is channels-last. Inside a
        spectral_norm_step block the converted copy is made once and reused: otherwise
        autocast casts W at every call and oneDNN/cuDNN reorders it to the input's format
        at every call (once per time step in the ConvGRU)."""
        w = self.normalized_weight()
        kind = w.device.type
        dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else w.dtype
        fmt = _channels_last_format(x) if x is not None and x.dim() == w.dim() else None
        if (dtype == w.dtype and fmt is None) or self._sn_cached is None:
            return w
        key = (dtype, fmt, torch.is_grad_enabled())  # a no-grad copy must not serve a grad pass
        casts = self._sn_casts
        if self._sn_eval is not None and w is self._sn_eval[1]:
            casts = self._sn_eval_casts  # lives as long as the eval-mode W/sigma
        conv = casts.get(key)
        if conv is None:
            conv = w.to(dtype)
            if fmt is not None:
                conv = conv.contiguous(memory_format=fmt)
            casts[key] = conv
        return conv

    def normalized_weight(self) -> torch.Tensor:
        cached = self._sn_cached
        if cached is not None:
            return cached
        if self.training or (self.weight.requires_grad and torch.is_grad_enabled()):
            return self.compute_normalized_weight()
        return self._eval_weight()

    def train(self, mode: bool = True):
        """Switching modes drops the eval-mode W/sigma cache: fused optimizers (Adam with
        fused=True) update W in place WITHOUT bumping its version counter, so a cache
        kept across a training phase could serve the weights of before it."""
        self._sn_eval = None
        self._sn_eval_casts = {}
        return super().train(mode)

    def _eval_weight(self) -> torch.Tensor:
        """Eval mode, no gradient: u, v are frozen, so W/sigma only changes with W, u or v.
        Cached across forwards (sampling calls each layer once per window or chunk), keyed
        by the tensors' identity and version counters (load_state_dict bumps them) and
        dropped at every train()/eval() switch (see `train`)."""
        w, u, v = self.weight, self.sn_u, self.sn_v
        try:
            key = (w.data_ptr(), w._version, u.data_ptr(), u._version, v._version, w.dtype)
        except RuntimeError:  # inference tensors keep no version counter: no caching
            return self.compute_normalized_weight()
        if self._sn_eval is not None and self._sn_eval[0] == key:
            return self._sn_eval[1]
        with torch.no_grad():
            out = self.compute_normalized_weight()
        self._sn_eval = (key, out)
        self._sn_eval_casts = {}
        return out


class _SNConvNd(SpectralNormMixin):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.compute_weight(x), self.bias)


class SNConv2d(_SNConvNd, nn.Conv2d):
    """Conv2d with spectral norm and orthogonal init. (N, C, H, W) -> (N, C', H', W')."""


class SNConv3d(_SNConvNd, nn.Conv3d):
    """Conv3d with spectral norm and orthogonal init. (N, C, T, H, W) -> (N, C', T', H', W')."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _cpu_bf16_two_frames(x, self.kernel_size[0]):
            # oneDNN's bf16 conv3d weight gradient is garbage (~1e35) on CPU when T == 2 and
            # the kernel spans time (torch 2.14, measured; T = 1, 3, 4 and 1x1x1 are fine):
            # these small clips (a D's last 3D blocks) run in fp32
            with torch.autocast("cpu", enabled=False):
                w = self.normalized_weight().float()
                b = None if self.bias is None else self.bias.float()
                return self._conv_forward(x.float(), w, b)
        return super().forward(x)


def _channels_last_format(x: torch.Tensor) -> torch.memory_format | None:
    """channels_last / channels_last_3d if x (4D / 5D) is stored so (and not plainly
    contiguous, which a tensor with C == 1 or H == W == 1 is as well), else None."""
    if x.is_contiguous():
        return None
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return None


def _cpu_bf16_two_frames(x: torch.Tensor, kernel_t: int) -> bool:
    """Would this conv3d hit oneDNN's broken bf16 weight gradient (CPU, bf16, T == 2)?"""
    if x.device.type != "cpu" or x.dim() != 5 or x.shape[2] != 2 or kernel_t == 1:
        return False
    return x.dtype == torch.bfloat16 or (
        torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)


class SNLinear(SpectralNormMixin, nn.Linear):
    """Linear with spectral norm and orthogonal init. (N, in) -> (N, out)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.normalized_weight(), self.bias)


class SNEmbedding(SpectralNormMixin, nn.Embedding):
    """Class embedding with spectral norm (projection discriminators). (N,) -> (N, dim)."""

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return F.embedding(y, self.normalized_weight())


def spectral_norm_modules(model: nn.Module) -> Iterator[SpectralNormMixin]:
    for m in model.modules():
        if isinstance(m, SpectralNormMixin):
            yield m


@contextlib.contextmanager
def spectral_norm_step(model: nn.Module):
    """Compute every W/sigma in `model` once; calls inside the block reuse it.

    Nested blocks are free: layers already cached by an outer block are left
    to it. In eval mode without grad the block takes the eval-mode W/sigma (cached
    across blocks until W, u or v change: sampling's window calls recompute nothing).
    """
    mine = []
    for m in spectral_norm_modules(model):
        if m._sn_cached is None:
            m._sn_cached = m.normalized_weight()
            mine.append(m)
    try:
        yield
    finally:
        for m in mine:
            m._sn_cached = None
            m._sn_casts.clear()
