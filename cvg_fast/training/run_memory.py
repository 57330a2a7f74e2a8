"""How much memory this training process holds, for the progress bar, TensorBoard and the
end-of-run line.

CPU: the resident set of this process (VmRSS now, VmHWM its high-water mark, from
/proc/self/status; ru_maxrss where /proc is missing). CUDA: the caching allocator's
tensors on this process's device (memory_allocated now, max_memory_allocated peak): what
the model needs, without the allocator's cached-but-free blocks. Numbers are one
process's (rank 0's where only rank 0 reports).
"""

from __future__ import annotations

import torch


def _proc_status_kib(*keys: str) -> dict[str, int]:
    """{key: KiB} of the given /proc/self/status fields; {} without /proc."""
    found = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in keys:
                    found[key] = int(line.split()[1])
    except OSError:
        return {}
    return found


def memory_bytes(device: torch.device) -> tuple[int, int]:
    """(now, peak) bytes: CUDA tensors on `device`, else this process's resident set."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device), torch.cuda.max_memory_allocated(device)
    kib = _proc_status_kib("VmRSS", "VmHWM")
    if "VmRSS" not in kib:
        import resource

        peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
        kib = {"VmRSS": kib.get("VmRSS", peak), "VmHWM": kib.get("VmHWM", peak)}
    return kib["VmRSS"] * 1024, kib.get("VmHWM", kib["VmRSS"]) * 1024


def memory_kind(device: torch.device) -> str:
    """What `memory_bytes` measures, for messages: "CUDA allocated" or "RSS"."""
    return "CUDA allocated" if device.type == "cuda" else "RSS"


def format_bytes(n: float) -> str:
    """1288490188 -> '1.2G' (binary units, one decimal; the progress bar's `mem=`)."""
    units, i = "BKMGT", 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n:.0f}B" if i == 0 else f"{n:.1f}{units[i]}"
