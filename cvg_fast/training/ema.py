"""Exponential moving average (EMA) of G's weights: what samples, evaluation and the saved
generator use.

A GAN generator's weights keep oscillating around a good point (D keeps pushing them); an
average over the recent steps samples better (Yazıcı et al. 2019; BigGAN, StyleGAN). The
average lives in a second generator, `GeneratorEMA.model`, updated after every APPLIED G
step (a skipped non-finite step leaves it as it is):

    decay_t = min(D, (1 + t) / (10 + t))        t = the training step just taken (0-based)
    p_ema  <- decay_t * p_ema + (1 - decay_t) * p

The ramp: without one, D = 0.999 still keeps 0.999^600 = 55% of the random initial weights
after the tiny preset's 600 steps. (1 + t) / (10 + t) averages over about the last t/9
steps (a tenth of the run so far) until it reaches D. It is a function of the step alone,
where StyleGAN's half-life ramp counts images: a preset's D means the same whatever the
batch or number of processes, and a resumed or rolled-back run recomputes it exactly.

Buffers:
- BN running statistics are NOT averaged: G's statistics describe G's activations, not the
  averaged weights'. The EMA generator gets its own standing statistics
  (`LevelTrainer.recalibrate_bn` runs it on fresh batches) before it samples or is saved.
- spectral-norm u, v: one power iteration on the averaged weights per update, from the
  EMA's own u, v, so its sigma tracks the averaged W as G's tracks G's W (copying G's u, v
  would measure sigma along G's singular vectors, not the average's).
- any other buffer: copied from G.
Every process holds the same G after the gradient all-reduce, so each computes the same
average: no communication.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from cvg_fast.nn.spectral_norm import spectral_norm_modules

RAMP = 10  # decay_t = min(D, (1 + t) / (RAMP + t))


def ema_decay_at(decay: float, step: int) -> float:
    """The decay used by the update after training step `step` (0-based)."""
    return min(decay, (1.0 + step) / (RAMP + step))


class GeneratorEMA:
    """The averaged copy of a generator; `model` is always in eval mode, without grad."""

    def __init__(self, G: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"GeneratorEMA: decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(G).eval().requires_grad_(False)
        bn = {id(b) for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
              for b in m.buffers(recurse=False)}
        sn = {id(b) for m in spectral_norm_modules(self.model) for b in (m.sn_u, m.sn_v)}
        # buffers the update copies from G: neither BN statistics nor spectral-norm vectors
        self._copied = [name for name, b in self.model.named_buffers()
                        if id(b) not in bn and id(b) not in sn]

    @torch.no_grad()
    def update(self, G: nn.Module, step: int) -> float:
        """Average in G's weights after training step `step`; returns the decay used."""
        d = ema_decay_at(self.decay, step)
        ema = [p for p in self.model.parameters()]
        raw = [p.detach() for p in G.parameters()]
        torch._foreach_lerp_(ema, raw, 1.0 - d)  # p_ema + (1 - d) (p - p_ema)
        for m in spectral_norm_modules(self.model):
            m._power_iteration(m.weight.detach().float().flatten(1))
        if self._copied:
            src, dst = dict(G.named_buffers()), dict(self.model.named_buffers())
            for name in self._copied:
                dst[name].copy_(src[name])
        self.model.eval()  # drops the eval-mode W/sigma caches of the weights of before
        return d

    def reset(self, G: nn.Module) -> None:
        """Start the average again from G (resuming a checkpoint written without an EMA)."""
        self.model.load_state_dict(G.state_dict())
        self.model.eval()

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
        self.model.eval()
