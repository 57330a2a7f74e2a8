"""Where does level 2's flicker come from? A probe on a trained run (no training).

Samples the same videos as `cvg demo` (seed 0, upscaler windows overlapping by half) three
ways, changing only the upscaler's per-frame noise: as trained (i.i.d. per frame), zero,
and frozen (frame 0's noise at every frame). Prints per 16-frame window the flicker
(mean |frame t+1 - frame t|) and the evaluator's speed as ratios to the real clips of the
run's data, then splits the frame differences into a low band (4x4 average) and the rest
(the high band) for the generated and the real clips.

    python bench/upscaler_flicker_probe.py cvg_demo/run cvg_demo/data [--videos 64]

Shapes: videos (N, T, 3, 32, 32) in [-1, 1] from the cascade, uint8 (N, T, H, W, 3) for
the metrics.
"""

from __future__ import annotations

import argparse
import glob

import numpy as np
import torch
import torch.nn.functional as F

from cvg_fast.data.video_io import read_frames
from cvg_fast.metrics.motion import window_flicker, window_speed
from cvg_fast.metrics.synth_evaluator import load_synth_evaluator
from cvg_fast.models import frame_noise, video_noise
from cvg_fast.models.checkpoint import load_cascade


def _uint8(v: torch.Tensor) -> torch.Tensor:
    return ((v.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 1, 3, 4, 2)


def _bands(x: torch.Tensor) -> tuple[float, float, float]:
    """x (N, T, 3, S, S) in 0-255 -> (low-band flicker, high-band flicker, high-band energy)."""
    n, t, c, s, _ = x.shape
    lp = F.avg_pool2d(x.reshape(n * t, c, s, s), 4)
    hp = x - F.interpolate(lp, size=s, mode="bilinear").view(n, t, c, s, s)
    lp = lp.view(n, t, c, s // 4, s // 4)
    return ((lp[:, 1:] - lp[:, :-1]).abs().mean().item(),
            (hp[:, 1:] - hp[:, :-1]).abs().mean().item(), hp.abs().mean().item())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("data")
    p.add_argument("--videos", type=int, default=64)
    p.add_argument("--frames1", type=int, default=32, help="level-1 frames (default 32 -> 64)")
    a = p.parse_args()
    cas = load_cascade(a.run).eval()
    net = load_synth_evaluator(a.data)
    ids, seed = list(range(a.videos)), 0
    z = video_noise(seed, ids, cas.level_cfg(1).z_dim)
    y = torch.tensor([i % 4 for i in ids])
    files = sorted(glob.glob(f"{a.data}/*/*.mp4"))
    files = [files[i * len(files) // a.videos] for i in range(a.videos)]  # every class
    real = torch.as_tensor(np.stack([read_frames(f, range(64), size=32) for f in files]))
    real_flicker = window_flicker(real).mean()
    real_speed = window_speed(net, real).mean()

    for mode in ("as trained", "zero", "frozen"):
        def noise(level, t0, t1, shape, mode=mode):
            if level == 1 or mode == "as trained":
                return frame_noise(seed, ids, level, t0, t1, shape)
            if mode == "zero":
                return torch.zeros(a.videos, t1 - t0, *shape)
            return frame_noise(seed, ids, level, 0, 1, shape).expand(
                a.videos, t1 - t0, *shape).clone()

        with torch.inference_mode():
            v = torch.cat(list(cas.stream(z, y, a.frames1, noise, overlap=0.5)), dim=1)
        u8 = _uint8(v).contiguous()
        fl = np.round(window_flicker(u8).mean(0) / real_flicker, 2)
        sp = np.round(window_speed(net, u8).mean(0) / real_speed, 2)
        print(f"noise {mode:10s}  flicker / real per window {fl}  speed / real {sp}")
        if mode == "as trained":
            gen_bands = _bands(v.float().add(1).mul(127.5))
    real_bands = _bands(real.permute(0, 1, 4, 2, 3).float())
    for name, b in (("generated", gen_bands), ("real", real_bands)):
        print(f"{name:9s}  low-band flicker {b[0]:.2f}  high-band flicker {b[1]:.2f}  "
              f"high-band energy {b[2]:.2f} (0-255 levels)")


if __name__ == "__main__":
    main()
