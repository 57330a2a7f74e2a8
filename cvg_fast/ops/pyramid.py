"""The data pyramid operators f_s (spatial) and f_t (temporal) of the paper.

Videos are (N, T, C, H, W) everywhere. f_s halves H and W with an antialiased
bilinear filter (interior taps [1, 3, 3, 1] / 8, borders renormalised); f_t
keeps every k-th frame. x^{l-1} = f_t(f_s^m(x^l)) with 2^m the level's spatial
factor and k its temporal factor. f_s^1..f_s^m run as one `pyramid_down` call: the
reference is torch's antialiased F.interpolate per level; the fused kernels (cpp,
cuda, triton) read the frames once and compute every level in fp32, equal to the
reference borders included.

`upsample_time` is f_t's right inverse, the time axis of every upscaler's base
path: output frame k*i IS input frame i (so f_t keeps exactly the input), the
k - 1 frames after it move linearly toward input frame i + 1, and the last
input frame is held for the k - 1 frames after it (a window has no next frame).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from cvg_fast.ops.backends import resolve_backend, triton_module

def pyramid_down_reference(x: torch.Tensor, levels: int, scale: float = 1.0,
                           shift: float = 0.0, out_dtype: torch.dtype = torch.float32
                           ) -> list[torch.Tensor]:
    """f_s applied 1..levels times to frames (B, C, H, W), in fp32 (fp64 for double): the
    definition the fused kernels meet. y_0 = x * scale + shift (uint8 frames -> [-1, 1]
    with scale 2/255, shift -1); returns [y_1, ..., y_levels] cast to out_dtype."""
    wide = torch.float64 if (x.dtype == torch.float64 and out_dtype == torch.float64) \
        else torch.float32
    y = x.to(wide)
    if scale != 1.0 or shift != 0.0:
        y = y * scale + shift
    out = []
    with torch.autocast(x.device.type, enabled=False):
        for _ in range(levels):
            y = F.interpolate(y, scale_factor=0.5, mode="bilinear", antialias=True,
                              align_corners=False)
            out.append(y.to(out_dtype))
    return out


class _FusedPyramid(torch.autograd.Function):
    """Forward: every level in one fused pass (x read once). Backward: the filter's adjoint,
    torch's own antialiased-bilinear backward per level (the fused kernels are forward-only)."""

    @staticmethod
    def forward(ctx, x, levels, backend):
        kern = triton_module("pyramid") if backend == "triton" else torch.ops.cvg_fast
        out = kern.pyramid_down(x, levels, 1.0, 0.0, x.dtype)
        ctx.sizes = [tuple(x.shape)] + [tuple(o.shape) for o in out[:-1]]
        ctx.dtype = x.dtype
        return tuple(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):
        acc = None  # d loss / d level k's fp32 values, walked from the coarsest level down
        for k in range(len(grads) - 1, -1, -1):
            g = grads[k]
            if g is not None:
                acc = g.float() if acc is None else acc + g.float()
            if acc is not None:
                acc = torch.ops.aten._upsample_bilinear2d_aa_backward(
                    acc.contiguous(), list(acc.shape[2:]), list(ctx.sizes[k]), False, 0.5, 0.5)
        return (None if acc is None else acc.to(ctx.dtype)), None, None


def pyramid_down(x: torch.Tensor, levels: int, backend: str | None = None) -> list[torch.Tensor]:
    """Frames (B, C, H, W) -> [f_s(x), f_s^2(x), ..., f_s^levels(x)], each in x's dtype.

    One dispatch point for the pyramid kernel (cvg_fast.ops.backends): fused backends read
    x once and compute every level in fp32 (torch has no bf16 CPU kernel for the
    antialiased filter); gradients flow through torch's antialiased-bilinear backward.
    H and W must be divisible by 2**levels.
    """
    if x.dim() != 4:
        raise ValueError(f"pyramid_down expects frames (B, C, H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[2:]
    if levels < 1 or h % (1 << levels) or w % (1 << levels):
        raise ValueError(f"pyramid_down: {h}x{w} frames cannot be halved {levels} times "
                         f"(H and W must be divisible by 2**levels, levels >= 1)")
    if not x.is_floating_point():
        raise ValueError(f"pyramid_down: floating-point frames needed here, got {x.dtype} "
                         f"(uint8 frames: the kernels' scale/shift form, see the data path)")
    impl = resolve_backend("pyramid_down", x.device, backend)
    if impl == "reference":
        return pyramid_down_reference(x, levels, out_dtype=x.dtype)
    return list(_FusedPyramid.apply(x, levels, impl))


def spatial_down(x: torch.Tensor, backend: str | None = None) -> torch.Tensor:
    """f_s: (N, T, C, H, W) -> (N, T, C, H/2, W/2), antialiased bilinear."""
    return spatial_down_levels(x, 1, backend)


def spatial_down_levels(x: torch.Tensor, levels: int, backend: str | None = None
                        ) -> torch.Tensor:
    """f_s applied `levels` times: (N, T, C, H, W) -> (N, T, C, H/2^levels, W/2^levels).

    The frames' fold (N*T, C, H, W) is a view for contiguous and channels-last videos.
    Math in fp32 inside (fp64 for double): the filter's renormalised border taps (3/7)
    are not representable in bf16, and torch's CPU kernel has no bf16 version.
    """
    if x.dim() != 5:
        raise ValueError(f"spatial_down expects (N, T, C, H, W), got shape {tuple(x.shape)}")
    n, t, c, h, w = x.shape
    if h % (1 << levels) or w % (1 << levels):
        raise ValueError(f"spatial_down needs H and W divisible by {1 << levels}, got {h}x{w}")
    if levels == 0:
        return x
    y = pyramid_down(x.reshape(n * t, c, h, w), levels, backend)[-1]
    return y.reshape(n, t, c, h >> levels, w >> levels)


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
    return spatial_down_levels(x, (h // size).bit_length() - 1)


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
