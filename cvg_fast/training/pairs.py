"""Eq. 3's training pairs for one level: real windows from the data pyramid, fake ones
from this level's generator on the frozen levels' output.

Level 1: real x^1 (the pyramid's level-1 view of a clip) against G(z). Level L > 1: real
(x^L[s*tf : (s+w)*tf], x^{L-1}[s : s+w]) windows of one clip's pyramid against
(G(x̂^{L-1} window, noise), x̂^{L-1} window), x̂^{L-1} made by the frozen levels below
without grad. Every draw comes from a `BatchRandom` (row i keyed by sample i's global
position), so what a sample sees does not depend on the world size.
"""

from __future__ import annotations

import contextlib

import torch

from cvg_fast.config import CascadeConfig, TrainConfig
from cvg_fast.models import BatchRandom, Cascade
from cvg_fast.models.noise import seed_key
from cvg_fast.ops import pyramid


def level_shapes(cfg: CascadeConfig, upto: int) -> list[tuple[int, int]]:
    """[(frames, size)] of levels 1..upto: the pyramid's views."""
    return [(lv.frames, lv.size) for lv in cfg.levels[:upto]]


class PairMaker:
    """Real and fake inputs of level `level`'s discriminator; `lower`: the frozen levels
    1..level-1 (None for level 1). Shapes: videos (N, T, 3, S, S)."""

    def __init__(self, cfg: CascadeConfig, level: int, lower: Cascade | None, tc: TrainConfig,
                 device: torch.device):
        self.cfg, self.level, self.lower, self.tc, self.device = cfg, level, lower, tc, device
        # where TBPTT window starts are drawn from inside `shared_windows` (no rank, no sample)
        self._window_gen: torch.Generator | None = None

    @contextlib.contextmanager
    def shared_windows(self, *key):
        """Inside, TBPTT window starts come from a generator keyed by `key` alone: every
        process draws the same starts, so each runs the same number of no-grad chunks (and
        its synchronised BN the same collectives)."""
        if not self.tc.tbptt_horizon:
            yield
            return
        g = torch.Generator(device=self.device)
        g.manual_seed(seed_key(self.tc.seed, "tbptt", *key))
        self._window_gen = g
        try:
            yield
        finally:
            self._window_gen = None

    def lower_output(self, y: torch.Tensor | None, n: int, rnd: BatchRandom) -> torch.Tensor:
        """x̂^{L-1} (N, T, 3, s, s) from the frozen levels below, without grad.

        T = T_{L-1} at the training length; with `input_rollout` R, level 1 makes R more
        frames and T grows by R times the levels' frame factors.
        """
        lower = self.lower
        c1 = lower.level_cfg(1)  # level 1 is driven by its own config, not this level's
        z = rnd.randn(n, c1.z_dim)
        with torch.no_grad():
            chunks = lower.stream(z, y, c1.levels[0].frames + self.tc.input_rollout,
                                  lambda lvl, t0, t1, shape: rnd.randn(n, t1 - t0, *shape))
            return torch.cat(list(chunks), dim=1)

    def windows(self, n: int, rnd: BatchRandom, t_in: int | None = None) -> torch.Tensor:
        """Random window starts (N,) in input frames for an upscaling level (input: t_in
        frames, default the level below's training length)."""
        t_in = t_in or self.cfg.levels[self.level - 2].frames
        return rnd.randint(t_in - self.cfg.window(self.level) + 1, n)

    @staticmethod
    def take(x: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
        """(N, T, ...) -> (N, length, ...) with row i = frames starts[i] : starts[i] + length."""
        idx = starts.view(-1, 1) + torch.arange(length, device=x.device).view(1, -1)
        return torch.gather(x, 1, idx.view(*idx.shape, 1, 1, 1).expand(-1, -1, *x.shape[2:]))

    def real_pair(self, video: torch.Tensor, rnd: BatchRandom):
        """(x^L, x^{L-1}) from the data pyramid of a top-level clip, windowed for L > 1.
        (Loaders built by `train_level` deliver these views decoded already: see
        `cvg_fast.data.level_views`; this is the path for whole clips.)"""
        views = pyramid(video, level_shapes(self.cfg, self.cfg.num_levels))
        high = views[self.level - 1]
        if self.level == 1:
            return high, None
        low = views[self.level - 2]
        w, tf = self.cfg.window(self.level), self.cfg.t_factor(self.level)
        s = self.windows(video.shape[0], rnd)
        return self.take(high, s * tf, w * tf), self.take(low, s, w)

    def fake(self, net: torch.nn.Module, y, n: int, rnd: BatchRandom,
             x_low: torch.Tensor | None) -> torch.Tensor:
        """`net`'s output (this level's G or its EMA; with grad if enabled) for noise from
        `rnd`; x_low: the input window for L > 1 (`fake_input`)."""
        if self.level == 1:
            cfg = self.cfg
            t = cfg.levels[0].frames
            if self.tc.tbptt_horizon > 0:
                return self._fake_tbptt(net, y, n, rnd, t)
            k = (int(torch.randint(0, self.tc.rollout_offset + 1, (), generator=rnd.shared,
                                   device=self.device)) if self.tc.rollout_offset > 0 else 0)
            e = rnd.randn(n, t + k, cfg.z_t_dim) if cfg.z_t_dim else None
            out = net(rnd.randn(n, cfg.z_dim), y, frames=t + k, frame_noise=e)
            return out[:, k:]  # D judges frames k..k+T of a longer rollout
        t = x_low.shape[1] * self.cfg.t_factor(self.level)
        return net(x_low, rnd.randn(n, t, self.cfg.z_ch, *x_low.shape[-2:]), y)

    def _fake_tbptt(self, net: torch.nn.Module, y, n: int, rnd: BatchRandom,
                    t: int) -> torch.Tensor:
        """Level 1 with truncated backpropagation: frames s..s+T of an (s+T)-frame rollout,
        s uniform in [0, tbptt_horizon]. Frames 0..s-1 run without grad in T-frame chunks
        (memory of one window, whatever the horizon) and hand over only the ConvGRU states,
        detached; the T frames run with grad (if enabled) from there. The per-frame noise is
        drawn for the whole rollout at once, so the window is the one-pass video's frames
        s..s+T (exactly so in eval mode; in train mode BN sees each chunk's statistics)."""
        cfg = self.cfg
        wg = self._window_gen if self._window_gen is not None else rnd.shared
        s = int(torch.randint(0, self.tc.tbptt_horizon + 1, (), generator=wg, device=wg.device))
        e = rnd.randn(n, s + t, cfg.z_t_dim) if cfg.z_t_dim else None
        z = rnd.randn(n, cfg.z_dim)
        state = None
        with torch.no_grad():
            for t0 in range(0, s, t):
                t1 = min(t0 + t, s)
                _, state = net(z, y, frames=t1 - t0,
                               frame_noise=None if e is None else e[:, t0:t1],
                               state=state, return_state=True)
        if state is not None:
            state = [h.detach() for h in state]  # the truncation: no gradient into frames < s
        return net(z, y, frames=t, frame_noise=None if e is None else e[:, s:], state=state)

    def fake_input(self, y, n: int, rnd: BatchRandom) -> torch.Tensor | None:
        """A random window of x̂^{L-1} (N, w, 3, s, s) for L > 1; None for level 1."""
        if self.level == 1:
            return None
        low = self.lower_output(y, n, rnd)
        return self.take(low, self.windows(n, rnd, low.shape[1]), self.cfg.window(self.level))
