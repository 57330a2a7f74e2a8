"""The data pyramid operators f_s (spatial) and f_t (temporal) of the paper.

Videos are (N, T, C, H, W) everywhere. f_s halves H and W with an antialiased
bilinear filter (interior taps [1, 3, 3, 1] / 8, borders renormalised); f_t
keeps every k-th frame. x^{l-1} = f_t(f_s^m(x^l)) with 2^m the level's spatial
factor and k its temporal factor. These are the reference implementations;
fused kernels added later must equal them, borders included, and are chosen
through `spatial_down`'s `backend` argument.

`upsample_time` is f_t's right inverse, the time axis of every upscaler's base
path: output frame k*i IS input frame i (so f_t keeps exactly the input), the
k - 1 frames after it move linearly toward input frame i + 1, and the last
input frame is held for the k - 1 frames after it (a window has no next frame).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_BACKENDS = ("reference",)


def spatial_down(x: torch.Tensor, backend: str | None = None) -> torch.Tensor:
    """f_s: (N, T, C, H, W) -> (N, T, C, H/2, W/2), antialiased bilinear."""
    if backend not in (None, "auto", *_BACKENDS):
        raise ValueError(f"spatial_down: unknown backend {backend!r} (have {_BACKENDS})")
    if x.dim() != 5:
        raise ValueError(f"spatial_down expects (N, T, C, H, W), got shape {tuple(x.shape)}")
    n, t, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"spatial_down needs even H and W, got {h}x{w}")
    # fp32 inside: antialiased interpolation has no bf16/fp16 CPU kernel, and the filter's
    # renormalised border taps (3/7) are not representable in bf16 anyway
    wide = x if x.dtype in (torch.float32, torch.float64) else x.float()
    with torch.autocast(x.device.type, enabled=False):
        y = F.interpolate(
            wide.reshape(n * t, c, h, w), scale_factor=0.5, mode="bilinear",
            antialias=True, align_corners=False,
        )
    return y.reshape(n, t, c, h // 2, w // 2).to(x.dtype)


def temporal_down(x: torch.Tensor, k: int) -> torch.Tensor:
    """f_t: keep frames 0, k, 2k, ... of (N, T, ...)."""
    if k < 1:
        raise ValueError(f"temporal_down factor must be >= 1, got {k}")
    return x[:, ::k]


def upsample_time(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N, T, ...) -> (N, T*k, ...): out[k*i + j] = x[i] + (j/k) (x[i+1] - x[i]), last frame held.

    The right inverse of f_t: temporal_down(upsample_time(x, k), k) == x exactly.
    """
    if k < 1:
        raise ValueError(f"upsample_time factor must be >= 1, got {k}")
    if k == 1:
        return x
    t = x.shape[1]
    nxt = torch.cat([x[:, 1:], x[:, -1:]], dim=1)  # frame i + 1, the last one held
    frac = torch.arange(k, device=x.device, dtype=x.dtype) / k  # (k,)
    frac = frac.view(1, 1, k, *([1] * (x.dim() - 2)))
    a, b = x.unsqueeze(2), nxt.unsqueeze(2)  # (N, T, 1, ...)
    out = a + frac * (b - a)  # (N, T, k, ...)
    return out.reshape(x.shape[0], t * k, *x.shape[2:])


def downsample_to(x: torch.Tensor, frames: int, size: int) -> torch.Tensor:
    """Apply f_t and f_s until (N, T, C, H, W) becomes (N, frames, C, size, size).

    T must be a multiple of `frames` and H a power-of-two multiple of `size`.
    """
    t, h = x.shape[1], x.shape[3]
    if t % frames or h % size or (h // size) & (h // size - 1):
        raise ValueError(f"cannot downsample {t} frames x {h}px to {frames} x {size}px")
    x = temporal_down(x, t // frames)
    while x.shape[3] > size:
        x = spatial_down(x)
    return x


def upsample_to(x: torch.Tensor, frames: int, size: int) -> torch.Tensor:
    """(N, T, C, h, w) -> (N, frames, C, size, size): `upsample_time` then bilinear in space.

    The baseline "an upscaler that learned nothing": the same time alignment as every
    upscaler's base path (input frame i at output frame k*i), over the whole video.
    frames must be a multiple of T.
    """
    n, t, c, h, w = x.shape
    if frames < t or size < h or frames % t:
        raise ValueError(f"cannot upsample {t} frames x {h}px to {frames} x {size}px "
                         f"(frames must be a multiple of {t})")
    x = upsample_time(x, frames // t)
    if size != h:
        x = F.interpolate(x.reshape(n * frames, c, h, w), size=(size, size), mode="bilinear",
                          align_corners=False).view(n, frames, c, size, size)
    return x


def pyramid(x: torch.Tensor, shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Views x^1..x^L of a top-level clip; `shapes` = [(frames_l, size_l)] bottom-up.

    The last shape must be x's own (frames, size); each lower view is computed
    from the one above it, as in the paper.
    """
    views = [x]
    for frames, size in reversed(shapes[:-1]):
        views.append(downsample_to(views[-1], frames, size))
    return views[::-1]
