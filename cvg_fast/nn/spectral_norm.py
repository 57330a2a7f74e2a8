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
        with torch.no_grad():
            for _ in range(power_iterations):
                self._power_iteration(w)

    def _power_iteration(self, w: torch.Tensor) -> None:
        self.sn_u.copy_(F.normalize(torch.mv(w, self.sn_v), dim=0, eps=_EPS))
        self.sn_v.copy_(F.normalize(torch.mv(w.t(), self.sn_u), dim=0, eps=_EPS))

    def compute_normalized_weight(self) -> torch.Tensor:
        """W / sigma(W); updates u, v once when training (no grad through them)."""
        w = self.weight
        w_mat = w.flatten(1)
        if self.training:
            with torch.no_grad():
                self._power_iteration(w_mat.detach())
        u = self.sn_u.clone(memory_format=torch.contiguous_format)
        v = self.sn_v.clone(memory_format=torch.contiguous_format)
        sigma = torch.dot(u, torch.mv(w_mat, v))
        return w / sigma

    def normalized_weight(self) -> torch.Tensor:
        cached = self._sn_cached
        return cached if cached is not None else self.compute_normalized_weight()


class _SNConvNd(SpectralNormMixin):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.normalized_weight(), self.bias)


class SNConv2d(_SNConvNd, nn.Conv2d):
    """Conv2d with spectral norm and orthogonal init. (N, C, H, W) -> (N, C', H', W')."""


class SNConv3d(_SNConvNd, nn.Conv3d):
    """Conv3d with spectral norm and orthogonal init. (N, C, T, H, W) -> (N, C', T', H', W')."""


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
    to it.
    """
    mine = []
    for m in spectral_norm_modules(model):
        if m._sn_cached is None:
            m._sn_cached = m.compute_normalized_weight()
            mine.append(m)
    try:
        yield
    finally:
        for m in mine:
            m._sn_cached = None
