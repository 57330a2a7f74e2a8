"""GAN objectives over the dict of discriminator scores.

Every head's scores (any shape: (N,) or (N, k) per-frame) contribute the mean
of its loss; heads are summed, as the paper sums its discriminators.
hinge (default):  L_D = E[relu(1 - D(real))] + E[relu(1 + D(fake))],  L_G = -E[D(fake)]
ns (eq. 2/3):      L_D = E[softplus(-D(real))] + E[softplus(D(fake))], L_G = E[softplus(-D(fake))]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def d_loss(real: dict[str, torch.Tensor], fake: dict[str, torch.Tensor],
           kind: str = "hinge", log: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
    """(total, {"d_<head>": value}); log=False skips the per-head floats (no host sync;
    fake tensors, as the memory study uses, hold no values)."""
    total, parts = 0.0, {}
    for name in real:
        if kind == "hinge":
            loss = F.relu(1 - real[name]).mean() + F.relu(1 + fake[name]).mean()
        elif kind == "ns":
            loss = F.softplus(-real[name]).mean() + F.softplus(fake[name]).mean()
        else:
            raise ValueError(f"unknown loss {kind!r}")
        total = total + loss
        if log:
            parts[f"d_{name}"] = float(loss.detach())
    return total, parts


def g_loss(fake: dict[str, torch.Tensor], kind: str = "hinge",
           log: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
    """(total, {"g_<head>": value}); log=False as in d_loss."""
    total, parts = 0.0, {}
    for name, s in fake.items():
        if kind == "hinge":
            loss = -s.float().mean()
        elif kind == "ns":
            loss = F.softplus(-s.float()).mean()
        else:
            raise ValueError(f"unknown loss {kind!r}")
        total = total + loss
        if log:
            parts[f"g_{name}"] = float(loss.detach())
    return total, parts
