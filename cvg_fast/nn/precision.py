"""Which precision and memory layout run fastest on a device, and the user's override.

Measured (NOTES.md, "bf16 on this CPU"): on a CPU with AVX512-BF16 oneDNN runs bf16
convolutions 1.9-3.1x faster than fp32, and channels-last beats contiguous in both
precisions; on GPUs with bf16 tensor cores (Ampere and later) bf16 + channels-last is
cuDNN's fast path. Without native bf16 (older CPUs: emulated, slower than fp32; pre-
Ampere GPUs) fp32 stays the default, still channels-last.

    settings = resolve_precision(device, amp="auto", channels_last=None)
    settings.amp            "none" | "bf16"
    settings.channels_last  bool
    settings.describe()     one line for the start of a run, saying why
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from cvg_fast.errors import CvgError

AMP_MODES = ("auto", "none", "bf16")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """/proc/cpuinfo's flags of the first CPU (empty where there is no such file)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:  # not Linux: no flags known, so no native bf16 is assumed
        return frozenset()
    return frozenset()


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """(does `device` compute bf16 natively?, what was checked)."""
    device = torch.device(device)
    if device.type == "cuda":
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
        name = torch.cuda.get_device_name(device) if torch.cuda.is_available() else "no GPU"
        return ok, f"{name}: bf16 {'native' if ok else 'not native'}"
    if device.type == "cpu":
        flags = cpu_flags()
        found = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
        return bool(found), (f"CPU with {'/'.join(found).upper()}" if found
                             else "CPU without AVX512-BF16/AMX (bf16 would be emulated)")
    return False, f"{device.type}: no bf16 fast path known"


@dataclass(frozen=True)
class PrecisionSettings:
    amp: str  # "none" | "bf16"
    channels_last: bool
    why: str  # where the choice came from

    def describe(self) -> str:
        precision = "bf16 autocast" if self.amp == "bf16" else "fp32"
        layout = "channels-last" if self.channels_last else "contiguous"
        return f"{precision}, {layout} ({self.why})"


# Training level 1 with amp "auto" stays fp32: measured on the demo recipe (README,
# "Speed"), level 1 trained in bf16 lost quality (class accuracy 66-80% vs 100%, FVD-synth
# 134-169 vs 119-130), with its generator in fp32 and only its discriminators in bf16 its
# FVD-synth was still 169; for ~13% of a level-1 step. Upscalers train in bf16.
FP32_TRAINING_LEVELS = (1,)


def resolve_precision(device: torch.device | str, amp: str = "auto",
                      channels_last: bool | None = None,
                      level: int | None = None) -> PrecisionSettings:
    """The settings to run with: `amp` "auto" and `channels_last` None pick the fastest
    measured for the device that keeps quality (`level`: the level being trained; level 1
    trains in fp32, see FP32_TRAINING_LEVELS); explicit values are kept (bf16 where it is
    emulated runs, slowly: the user asked for it)."""
    if amp not in AMP_MODES:
        raise CvgError(f"unknown amp mode {amp!r}: use {', '.join(AMP_MODES)}")
    native, what = native_bf16(torch.device(device))
    picked = []
    if amp == "auto":
        amp = "bf16" if native and level not in FP32_TRAINING_LEVELS else "none"
        picked.append("amp")
        if native and level in FP32_TRAINING_LEVELS:
            what += f"; level {level} trains in fp32 (bf16 cost quality, README 'Speed')"
    if channels_last is None:
        channels_last = True
        picked.append("layout")
    why = f"{'auto-picked ' + ' and '.join(picked) + ' for ' if picked else 'as asked; '}{what}"
    return PrecisionSettings(amp, bool(channels_last), why)
