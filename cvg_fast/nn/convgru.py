"""Convolutional GRU over a video, reset gate applied before the candidate conv.

Ballas et al. 2015 (the paper's ref. 7):
    r, z = sigmoid(conv_g([x, h]))        n = tanh(conv_n([x, r*h]))
    h'   = (1 - z) * h + z * n

The x-half of both convolutions does not depend on h, so it runs once for the
whole sequence as one (N*T)-batched conv (bias included); only the h-half is in
the time loop, one `cvg_fast.ops.gru_cell` per step (fused backends: two pointwise
kernels each way around the two convs). Under `spectral_norm_step` W/sigma is
computed once for all time steps.

Precision and layout: under autocast the recurrence runs in the autocast dtype (the
x-convs come out in it; the state starts in it), with the h-weights cast once per
sequence. A channels-last video in ((N, T, H, W, C) memory, see cvg_fast.nn.layout)
gives a channels-last video out; the time slices are views, the output is written
once (one stack), never per-step copies of the whole sequence.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cvg_fast.nn.layout import is_video_channels_last
from cvg_fast.nn.spectral_norm import SNConv2d
from cvg_fast.ops import gru_cell


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    kind = x.device.type
    if torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return x.dtype


def stack_time(frames: list[torch.Tensor], channels_last: bool) -> torch.Tensor:
    """T tensors (N, C, H, W) -> (N, T, C, H, W); (N, T, H, W, C) memory when channels_last.

    torch.stack of channels_last frames writes a strided result that the next conv would
    copy again; stacking the (N, H, W, C) views writes the video's own order at once.
    """
    if not channels_last:
        return torch.stack(frames, dim=1)
    return torch.stack([f.permute(0, 2, 3, 1) for f in frames], dim=1).permute(0, 1, 4, 2, 3)


class ConvGRU(nn.Module):
    """(N, T, C_in, H, W) -> (N, T, C_hid, H, W); h_0 = 0 unless given."""

    def __init__(self, in_ch: int, hid_ch: int, kernel_size: int = 3):
        super().__init__()
        self.in_ch, self.hid_ch, self.pad = in_ch, hid_ch, kernel_size // 2
        self.gates = SNConv2d(in_ch + hid_ch, 2 * hid_ch, kernel_size, padding=self.pad)
        self.cand = SNConv2d(in_ch + hid_ch, hid_ch, kernel_size, padding=self.pad)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        n, t, c, hh, ww = x.shape
        cl = is_video_channels_last(x) and not x.is_contiguous()
        wg, wn = self.gates.normalized_weight(), self.cand.normalized_weight()
        ci = self.in_ch
        flat = x.reshape(n * t, c, hh, ww)  # a view: contiguous or channels_last frames
        xg = F.conv2d(flat, wg[:, :ci], self.gates.bias, padding=self.pad)
        xn = F.conv2d(flat, wn[:, :ci], self.cand.bias, padding=self.pad)
        dtype = xg.dtype  # the autocast dtype under autocast, else x's
        xg = xg.view(n, t, -1, hh, ww).unbind(1)  # time slices (views); one stack in backward
        xn = xn.view(n, t, -1, hh, ww).unbind(1)
        wg_h, wn_h = wg[:, ci:], wn[:, ci:]
        with torch.no_grad():  # the compute-dtype copies the convs run on, cast once
            wg_c, wn_c = wg_h.to(dtype), wn_h.to(dtype)
        if h is None:
            h = x.new_zeros(n, self.hid_ch, hh, ww, dtype=dtype)
            if cl:
                h = h.contiguous(memory_format=torch.channels_last)
        else:
            h = h.to(dtype)
        out = []
        for step in range(t):
            h = gru_cell(xg[step], xn[step], h, wg_h, wn_h, self.pad, w_g_c=wg_c, w_n_c=wn_c)
            out.append(h)
        return stack_time(out, cl)
