"""Convolutional GRU over a video, reset gate applied before the candidate conv.

Ballas et al. 2015 (the paper's ref. 7):
    r, z = sigmoid(conv_g([x, h]))        n = tanh(conv_n([x, r*h]))
    h'   = (1 - z) * h + z * n

The x-half of both convolutions does not depend on h, so it runs once for the
whole sequence as one (N*T)-batched conv (bias included); only the h-half is in
the time loop, `cvg_fast.ops.gru_sequence` (fused backends: two pointwise kernels
each way around the two convs per step, and the recurrent weights' gradients as one
batched conv over all steps). Under `spectral_norm_step` W/sigma is computed once
for all time steps.

Precision and layout: under autocast the recurrence runs in the autocast dtype (the
x-convs come out in it; the state starts in it), with the h-weights cast once per
sequence. A channels-last video in ((N, T, H, W, C) memory, see cvg_fast.nn.layout)
gives a channels-last video out; the time slices are views and the output is
written once (one stack), in the video's order.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cvg_fast.nn.layout import is_video_channels_last
from cvg_fast.nn.spectral_norm import SNConv2d
from cvg_fast.ops import gru_sequence


class ConvGRU(nn.Module):
    """(N, T, C_in, H, W) -> (N, T, C_hid, H, W); h_0 = 0 unless given.

    A long video runs in time chunks with the state carried: `h` of the next chunk is
    `final_state(out)` of this one (the outputs equal the one-pass outputs).
    """

    def __init__(self, in_ch: int, hid_ch: int, kernel_size: int = 3):
        super().__init__()
        self.in_ch, self.hid_ch, self.pad = in_ch, hid_ch, kernel_size // 2
        self.gates = SNConv2d(in_ch + hid_ch, 2 * hid_ch, kernel_size, padding=self.pad)
        self.cand = SNConv2d(in_ch + hid_ch, hid_ch, kernel_size, padding=self.pad)

    # Under bf16 autocast the recurrence still runs in fp32 (convs included): measured on the
    # demo recipe, a level 1 whose ConvGRU ran in bf16 lost class identity and FVD-synth
    # (accuracy 66-80% vs 100% in fp32, three seeds each); see README, "Speed". (The
    # level-1 generator goes further and runs all in fp32: Level1Generator.) Sampling
    # (torch.inference_mode) follows autocast: measured, no quality cost (Level1Generator).
    RECURRENCE_FP32 = True

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        kind = x.device.type
        if (self.RECURRENCE_FP32 and torch.is_autocast_enabled(kind)
                and not torch.is_inference_mode_enabled()):
            with torch.autocast(kind, enabled=False):
                return self._forward(x.float(), None if h is None else h.float())
        return self._forward(x, h)

    @staticmethod
    def final_state(out: torch.Tensor) -> torch.Tensor:
        """(N, T, C, H, W) outputs -> the last step's state (N, C, H, W), as its own small copy
        (a view would keep the whole chunk's outputs alive), in the outputs' layout."""
        return out[:, -1].clone(memory_format=torch.preserve_format)

    def _forward(self, x: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
        n, t, c, hh, ww = x.shape
        cl = is_video_channels_last(x) and not x.is_contiguous()
        wg, wn = self.gates.normalized_weight(), self.cand.normalized_weight()
        ci = self.in_ch
        flat = x.reshape(n * t, c, hh, ww)  # a view: contiguous or channels_last frames
        xg = F.conv2d(flat, wg[:, :ci], self.gates.bias, padding=self.pad)
        xn = F.conv2d(flat, wn[:, :ci], self.cand.bias, padding=self.pad)
        dtype = xg.dtype  # the autocast dtype under autocast, else x's
        xg = xg.view(n, t, -1, hh, ww)  # views: (N, T, 2C, H, W) and (N, T, C, H, W)
        xn = xn.view(n, t, -1, hh, ww)
        wg_h, wn_h = wg[:, ci:], wn[:, ci:]
        fmt = torch.channels_last if cl else torch.contiguous_format
        with torch.no_grad():  # the copies the recurrent convs run on: dtype and format, once
            wg_c = wg_h.to(dtype).contiguous(memory_format=fmt)
            wn_c = wn_h.to(dtype).contiguous(memory_format=fmt)
        if h is None:
            h = x.new_zeros(n, self.hid_ch, hh, ww, dtype=dtype)
            if cl:
                h = h.contiguous(memory_format=torch.channels_last)
        else:
            if tuple(h.shape) != (n, self.hid_ch, hh, ww):
                raise ValueError(f"ConvGRU: state must be ({n}, {self.hid_ch}, {hh}, {ww}), "
                                 f"got {tuple(h.shape)}")
            h = h.to(dtype).contiguous(memory_format=fmt)
        return gru_sequence(xg, xn, h, wg_h, wn_h, self.pad, w_g_c=wg_c, w_n_c=wn_c,
                            channels_last=cl)
