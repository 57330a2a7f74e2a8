"""Convolutional GRU over a video, reset gate applied before the candidate conv.

Ballas et al. 2015 (the paper's ref. 7):
    r, z = sigmoid(conv_g([x, h]))        n = tanh(conv_n([x, r*h]))
    h'   = (1 - z) * h + z * n            (fused: cvg_fast.ops.gru_blend)

The x-half of both convolutions does not depend on h, so it runs once for the
whole sequence as one (N*T)-batched conv; only the h-half is in the time loop.
Under `spectral_norm_step` W/sigma is computed once for all time steps.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cvg_fast.nn.spectral_norm import SNConv2d
from cvg_fast.ops import gru_blend


class ConvGRU(nn.Module):
    """(N, T, C_in, H, W) -> (N, T, C_hid, H, W); h_0 = 0 unless given."""

    def __init__(self, in_ch: int, hid_ch: int, kernel_size: int = 3):
        super().__init__()
        self.in_ch, self.hid_ch, self.pad = in_ch, hid_ch, kernel_size // 2
        self.gates = SNConv2d(in_ch + hid_ch, 2 * hid_ch, kernel_size, padding=self.pad)
        self.cand = SNConv2d(in_ch + hid_ch, hid_ch, kernel_size, padding=self.pad)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        n, t, c, hh, ww = x.shape
        wg, wn = self.gates.normalized_weight(), self.cand.normalized_weight()
        ci = self.in_ch
        flat = x.reshape(n * t, c, hh, ww)
        xg = F.conv2d(flat, wg[:, :ci], self.gates.bias, padding=self.pad).view(n, t, -1, hh, ww)
        xn = F.conv2d(flat, wn[:, :ci], self.cand.bias, padding=self.pad).view(n, t, -1, hh, ww)
        wg_h, wn_h = wg[:, ci:], wn[:, ci:]
        if h is None:
            h = x.new_zeros(n, self.hid_ch, hh, ww)
        out = []
        for step in range(t):
            g = xg[:, step] + F.conv2d(h, wg_h, padding=self.pad)
            r_pre, z_pre = g.chunk(2, dim=1)
            n_pre = xn[:, step] + F.conv2d(torch.sigmoid(r_pre) * h, wn_h, padding=self.pad)
            h = gru_blend(h, z_pre, n_pre)
            out.append(h)
        return torch.stack(out, dim=1)
