"""The two generators of the cascade.

Level1Generator: noise z (+ class) -> T frames at size S, temporally coherent
through ConvGRU units (DVD-GAN style): fc([z, e_t]) -> 4x4 map per frame ->
[ConvGRU -> 2D residual up-block] x log2(S/4) -> BN-ReLU-conv-tanh.
It can unroll past its training length (`frames=` argument); the small per-frame
noise e_t keeps driving the recurrence there (with a constant input the
ConvGRU settles to a fixed point and long videos freeze).

UpscalerGenerator: a video x^{l-1} (N, T, 3, h, w) + noise -> x^l
(N, T*t_factor, 3, h*s, w*s). Temporal upsampling first (`upsample_time`: input
frame i lands on output frame t_factor*i, where f_t and the matching D look for
it), then units of [3D residual block -> 2D up-block -> 2D block], resolution
doubled per unit, and the resized low-res input fed into every unit's output
(1x1 conv) and into the output itself: out = tanh(g * conv(f) + atanh(base(x)))
with a learnt gain g that starts at 0, so training starts from the exact input.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from cvg_fast.nn import (
    ConditionalBatchNorm, ConvGRU, GBlock, SNConv2d, SNConv3d, SNLinear, spectral_norm_step,
)
from cvg_fast.nn.layout import cat_channels, video_channels_last
from cvg_fast.ops import spatial_down_levels, upsample_time


def _resize_frames(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, T, C, h, w) -> (N, T, C, size, size), bilinear."""
    n, t, c, h, w = x.shape
    if h == size:
        return x
    y = F.interpolate(x.reshape(n * t, c, h, w), size=(size, size), mode="bilinear",
                      align_corners=False)
    return y.view(n, t, c, size, size)


class Level1Generator(nn.Module):
    """z (N, z_dim), y (N,) or None -> video (N, T, 3, S, S) in [-1, 1]."""

    def __init__(self, frames: int, size: int, ch: int, z_dim: int, num_classes: int = 0,
                 out_ch: int = 3, z_t_dim: int = 0, motion_dim: int = 0):
        super().__init__()
        self.frames, self.size, self.z_dim, self.num_classes = frames, size, z_dim, num_classes
        self.z_t_dim = z_t_dim
        n_up = int(round(math.log2(size // 4)))
        widths = [ch * min(2 ** (n_up - k), 8) for k in range(n_up + 1)]  # 4x4 ... SxS
        emb = min(z_dim, 128) if num_classes > 0 else 0
        self.embed = nn.Embedding(num_classes, emb) if num_classes > 0 else None
        # motion_dim M > 0 (ours): every frame's input also gets M sinusoids of the frame's
        # index, sin/cos(w * t + phi), with per-video frequencies w in (0, pi) rad/frame and
        # phases phi both made from the video's code. They never settle, so a video keeps
        # moving at any length, and their statistics at frame 1,000 are those at frame 1.
        self.motion_dim = motion_dim
        self.motion = SNLinear(z_dim + emb, 2 * motion_dim) if motion_dim else None
        self.fc = SNLinear(z_dim + emb + z_t_dim + 2 * motion_dim, widths[0] * 16)
        self.grus = nn.ModuleList(ConvGRU(widths[k], widths[k]) for k in range(max(n_up, 1)))
        self.ups = nn.ModuleList(
            GBlock(widths[k], widths[k + 1], dims=2, up=True, num_classes=num_classes)
            for k in range(n_up)
        )
        self.out_bn = ConditionalBatchNorm(widths[-1], 0)
        self.out_conv = SNConv2d(widths[-1], out_ch, 3, padding=1)
        self.channels_last = False  # activations in (N, T, H, W, C) order (cvg_fast.nn.layout)

    # Level 1 runs in fp32 even under bf16 autocast (its discriminators still use bf16).
    # Measured on the demo recipe, three seeds each: a bf16 level 1 lost class identity
    # (accuracy 66-80% vs 100%) and FVD-synth (134-159 vs 119-130); with only its ConvGRU
    # in fp32 accuracy came back (100%, 100%) but FVD-synth/IS stayed uneven (127 and 169).
    # The level-1 generator is small and its time is mostly the recurrence: fp32 costs
    # little speed (README, "Speed"). Sampling (torch.inference_mode, as generate() runs)
    # follows autocast: an fp32-trained level 1 sampled in bf16 measured the same quality on
    # the demo's cascade (FVD-synth 16/64/256f 100.4/98.9/103.2 vs 100.5/99.0/103.2 in fp32,
    # class accuracy 100% both) and its chunks ran 1.56x faster (README, "Generation").
    FP32_UNDER_AUTOCAST = True

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None, frames: int | None = None,
                frame_noise: torch.Tensor | None = None, state: list[torch.Tensor] | None = None,
                return_state: bool = False):
        """frame_noise: (N, T, z_t_dim) per-frame noise (default: drawn from torch's RNG).

        state: every ConvGRU's hidden state (N, C_k, s_k, s_k) after the frames before these
        (None: the video's start). With return_state=True, returns (video, state after the
        last frame): run a long video in chunks, each given the last one's state, and the
        chunks equal the one-pass video (in eval mode; in train mode BN sees each chunk's
        own statistics). Truncated backpropagation detaches the state between chunks.
        """
        kind = z.device.type
        if (self.FP32_UNDER_AUTOCAST and torch.is_autocast_enabled(kind)
                and not torch.is_inference_mode_enabled()):
            with torch.autocast(kind, enabled=False):
                out = self._forward(z.float(), y, frames, frame_noise, state, return_state)
        else:
            out = self._forward(z, y, frames, frame_noise, state, return_state)
        return out if return_state else out[0]

    def stream(self, z: torch.Tensor, y: torch.Tensor | None, frames: int, chunk_frames: int,
               frame_noise_fn=None, call=None) -> Iterator[torch.Tensor]:
        """Chunks (N, t <= chunk_frames, 3, S, S) of a `frames`-frame video, in order.

        Only one chunk's activations and the ConvGRU states are resident, so memory does not
        grow with `frames`. frame_noise_fn(t0, t1) -> (N, t1 - t0, z_t_dim): the per-frame
        noise of frames t0..t1 (required when z_t_dim > 0; keyed by frame, so the video
        does not depend on the chunking). call: what runs a chunk, with this module's
        signature (default: the module; generate() passes a CUDA-graphed one on GPUs).
        """
        if frames < 1 or chunk_frames < 1:
            raise ValueError(f"Level1Generator.stream: frames and chunk_frames must be >= 1, "
                             f"got {frames}, {chunk_frames}")
        if self.z_t_dim and frame_noise_fn is None:
            raise ValueError("Level1Generator.stream: this generator takes per-frame noise: "
                             "pass frame_noise_fn")
        state, call = None, call or self
        for t0 in range(0, frames, chunk_frames):
            t1 = min(t0 + chunk_frames, frames)
            e = frame_noise_fn(t0, t1) if self.z_t_dim else None
            chunk, state = call(z, y, t1 - t0, e, state, return_state=True)
            yield chunk

    def _forward(self, z: torch.Tensor, y: torch.Tensor | None, frames: int | None,
                 frame_noise: torch.Tensor | None, state: list[torch.Tensor] | None,
                 keep_state: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        t = frames or (frame_noise.shape[1] if frame_noise is not None else self.frames)
        n = z.shape[0]
        if self.z_t_dim and frame_noise is None:
            frame_noise = torch.randn(n, t, self.z_t_dim, device=z.device, dtype=z.dtype)
        if self.z_t_dim and tuple(frame_noise.shape) != (n, t, self.z_t_dim):
            raise ValueError(f"frame_noise must be ({n}, {t}, {self.z_t_dim}), "
                             f"got {tuple(frame_noise.shape)}")
        want = len(self.grus) + (1 if self.motion is not None else 0)
        if state is not None and len(state) != want:
            raise ValueError(f"state must hold {len(self.grus)} ConvGRU states"
                             f"{' and the frame clock' if self.motion is not None else ''}, "
                             f"got {len(state)}")
        clock = None  # (N,) frames before these, for the motion sinusoids
        if self.motion is not None and state is not None:
            state, clock = state[:-1], state[-1]
        new_state = []
        with spectral_norm_step(self):
            if self.embed is not None:
                if y is None:
                    raise ValueError("class-conditional generator: pass labels y")
                z = torch.cat([z, self.embed(y)], dim=1)
            # the same content code at every step, plus this frame's noise
            rows = z.unsqueeze(1).expand(n, t, z.shape[1])
            if self.z_t_dim:
                rows = torch.cat([rows, frame_noise.to(z.dtype)], dim=2)
            if self.motion is not None:
                rows = torch.cat([rows, self._motion_codes(z, clock, t).to(rows.dtype)], dim=2)
            h = self.fc(rows.reshape(n * t, -1)).view(n, t, -1, 4, 4)
            if self.channels_last:  # the one conversion: every fold after it is a view
                h = video_channels_last(h)
            yy = y.repeat_interleave(t) if y is not None else None  # b-major, matches (N*T)
            for k, gru in enumerate(self.grus):
                h = gru(h, None if state is None else state[k])  # (N, T, C, s, s)
                if keep_state:  # a copy per chunk; a plain forward needs none
                    new_state.append(gru.final_state(h))
                if k < len(self.ups):
                    f = self.ups[k](h.reshape(n * t, *h.shape[2:]), yy)
                    h = f.view(n, t, *f.shape[1:])
            f = h.reshape(n * t, *h.shape[2:])
            f = torch.tanh(self.out_conv(F.relu(self.out_bn(f))))
        if keep_state and self.motion is not None:
            start = clock if clock is not None else z.new_zeros(n, dtype=torch.float32)
            new_state.append(start + t)
        return f.view(n, t, *f.shape[1:]), new_state

    def _motion_codes(self, code: torch.Tensor, clock: torch.Tensor | None,
                      t: int) -> torch.Tensor:
        """(N, t, 2M) float32: sin and cos of w * frame + phi for frames clock .. clock + t - 1,
        computed in float64 whatever the autocast dtype (frame indices reach thousands)."""
        n, m = code.shape[0], self.motion_dim
        with torch.autocast(code.device.type, enabled=False):
            wp = self.motion(code.float()).double()
            omega = math.pi * torch.sigmoid(wp[:, :m])  # rad/frame: at most Nyquist
            frames = torch.arange(t, device=code.device, dtype=torch.float64).view(1, t)
            if clock is not None:
                frames = frames + clock.double().view(n, 1)
            # float64 angles: exact at frame 10,000, and a chunk's codes round to the same
            # float32 values as the one-pass video's whatever path (vector or scalar) sin took
            angle = omega.view(n, 1, m) * frames.view(-1, t, 1) + wp[:, m:].view(n, 1, m)
            return torch.cat([torch.sin(angle), torch.cos(angle)], dim=2).float()


class UpscalerGenerator(nn.Module):
    """x_low (N, T, 3, h, h), noise (N, T*tf, z_ch, h, h), y -> (N, T*tf, 3, h*sf, h*sf).

    s_factor 1 (more frames, same size) is a temporal-only upscaler: one unit, no
    spatial up-sampling.
    """

    # The learned branch's gain is `GAIN_SCALE * residual_gain` with the parameter at 0:
    # step 0 outputs exactly base(x), and Adam (whose steps are ~lr whatever the gradient's
    # size) moves the gain GAIN_SCALE times faster than a plain parameter. With 1x it moved
    # ~1 lr per step: -0.065 after the demo's 240 level-2 steps, so level 2 was a bilinear
    # upsample. 20 measured better than 50 (README, "Upscalers").
    GAIN_SCALE = 20.0
    # the learned branch adds detail only (see `detail`)
    DETAIL_ONLY = True
    # atanh(base) is taken in fp32 with |base| <= ATANH_LIMIT (0.995 rounds to 1.0 in bf16)
    ATANH_LIMIT = 0.995

    def __init__(self, in_size: int, t_factor: int, s_factor: int, ch: int, z_ch: int,
                 num_classes: int = 0, img_ch: int = 3, gain_scale: float | None = None):
        super().__init__()
        if t_factor < 1 or s_factor < 1 or s_factor & (s_factor - 1):
            raise ValueError(f"upscaler factors must be t >= 1 and s a power of two >= 1, "
                             f"got t={t_factor}, s={s_factor}")
        self.in_size, self.t_factor, self.s_factor = in_size, t_factor, s_factor
        self.out_size = in_size * s_factor
        self.z_ch, self.num_classes = z_ch, num_classes
        self.gain_scale = float(self.GAIN_SCALE if gain_scale is None else gain_scale)
        n_up = int(round(math.log2(s_factor)))
        n_units = max(n_up, 1)
        # unit k runs at width widths[k] and outputs widths[k + 1] (halving as size doubles)
        widths = [ch * min(2 ** max(n_up - k, 0), 8) for k in range(n_units + 1)]
        self.stem = SNConv3d(img_ch + z_ch, widths[0], 3, padding=1)
        self.units3d = nn.ModuleList(
            GBlock(widths[k], widths[k], dims=3, num_classes=num_classes) for k in range(n_units))
        self.units_up = nn.ModuleList(
            GBlock(widths[k], widths[k + 1], dims=2, up=n_up > 0, num_classes=num_classes)
            for k in range(n_units))
        self.units2d = nn.ModuleList(
            GBlock(widths[k + 1], widths[k + 1], dims=2, num_classes=num_classes)
            for k in range(n_units))
        self.skips = nn.ModuleList(SNConv2d(img_ch, widths[k + 1], 1) for k in range(n_units))
        self.sizes = [in_size * 2 ** (k + 1) if n_up > 0 else in_size for k in range(n_units)]
        self.out_bn = ConditionalBatchNorm(widths[-1], 0)
        self.out_conv = SNConv2d(widths[-1], img_ch, 3, padding=1)
        self.residual_gain = nn.Parameter(torch.zeros(()))
        # per-channel strength of the noise input, 0 at init: the upscaler starts as a
        # deterministic function of its input and takes in noise only as D asks for it.
        # Fed at full strength from step 0, per-pixel, per-frame noise made flickering
        # coloured speckle (README, "Upscalers")
        self.noise_gain = nn.Parameter(torch.zeros(z_ch))
        self.channels_last = False  # activations in (N, T, H, W, C) order (cvg_fast.nn.layout)

    @property
    def gain(self) -> torch.Tensor:
        """The learned branch's effective gain (0 at initialisation)."""
        return self.residual_gain * self.gain_scale

    def upsample_time(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, C, h, w) -> (N, T*tf, C, h, w): input frame i at output frame tf*i."""
        return upsample_time(x, self.t_factor)

    def base(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, 3, h, w) -> (N, T*tf, 3, H, W) fp32: the output when the learned branch adds 0.

        Input frame i sits at output frame tf*i, the frames between move linearly toward
        input frame i + 1, the window's last frames hold its last input frame; bilinear
        in space. f_t(f_s^m(base(x))) == x for frames constant in space.
        """
        return _resize_frames(self.upsample_time(x.float()), self.out_size)

    def detail(self, delta: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> its detail: delta minus its low-pass (f_s^m, then bilinear back up).

        With s_factor > 1 the learned branch adds only what f_s removes: it sharpens and
        adds texture, and cannot repaint the colours and layout the level below decided
        (what the matching D checks, and what made a free branch cost class accuracy).
        A temporal-only upscaler (s_factor 1) keeps its branch whole: its job is in time.
        """
        if self.s_factor == 1 or not self.DETAIL_ONLY:
            return delta
        low = spatial_down_levels(delta.float().unsqueeze(1), self.s_factor.bit_length() - 1)
        low = _resize_frames(low, self.out_size).squeeze(1)
        return delta.float() - low

    def forward(self, x: torch.Tensor, noise: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        n, t_in = x.shape[:2]
        if x.shape[-1] != self.in_size:
            raise ValueError(f"upscaler expects {self.in_size}px input frames, got {x.shape[-1]}px")
        if self.num_classes > 0 and y is None:
            raise ValueError("class-conditional generator: pass labels y")
        xu = self.upsample_time(x)  # (N, T, 3, h, w)
        if self.channels_last:  # 3 channels: a small copy, then every fold is a view
            xu = video_channels_last(xu)
        t = xu.shape[1]
        if noise.shape[:2] != (n, t) or noise.shape[2] != self.z_ch:
            raise ValueError(f"noise must be (N, {t}, {self.z_ch}, h, w), got {tuple(noise.shape)}")
        yy = y.repeat_interleave(t) if y is not None else None
        with spectral_norm_step(self):
            noise = noise.to(xu.dtype) * self.noise_gain.view(1, 1, -1, 1, 1).to(xu.dtype)
            if self.channels_last:  # (N, T, H, W, C) memory: clips and frames are views of it
                stem_in = cat_channels([xu, noise.to(xu.dtype)])
            else:
                stem_in = torch.cat([xu, noise], dim=2)
            h = self.stem(stem_in.transpose(1, 2))
            for k in range(len(self.units3d)):
                h = self.units3d[k](h, y)  # (N, C, T, s, s)
                f = h.transpose(1, 2).reshape(n * t, h.shape[1], *h.shape[3:])
                f = self.units2d[k](self.units_up[k](f, yy), yy)
                skip = _resize_frames(xu, self.sizes[k])
                f = f + self.skips[k](skip.reshape(n * t, *skip.shape[2:]))
                h = f.view(n, t, *f.shape[1:]).transpose(1, 2)
            f = h.transpose(1, 2).reshape(n * t, h.shape[1], *h.shape[3:])
            delta = self.detail(self.out_conv(F.relu(self.out_bn(f))))
        # the residual sum in fp32 whatever the autocast dtype: atanh(0.995) is inf in bf16
        with torch.autocast(delta.device.type, enabled=False):
            base = _resize_frames(xu.float(), self.out_size).reshape(delta.shape)
            lim = self.ATANH_LIMIT
            out = torch.tanh(self.gain * delta.float() + torch.atanh(base.clamp(-lim, lim)))
        return out.view(n, t, *out.shape[1:])
