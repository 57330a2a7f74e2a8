"""Non-finite training steps: detect before the optimiser step, skip, count, roll back.

A GAN step that produces a NaN or inf (a bf16 overflow, a diverging D) used to end the
run. Instead, before each optimiser step the update's loss and gradients are checked;
a bad update is not applied, nor are the step's remaining updates, and every buffer
of G and D (BN running statistics, spectral-norm u/v, counters) returns to its value
at the step's start: a skipped step leaves the networks and optimisers exactly as they
were. After `max_in_row` skipped steps in a row the trainer rolls back to its last
checkpoint; rolling back to the same checkpoint twice stops the run.

Every process decides alike: the loss checked is the one averaged in the gradient
all-reduce (`distributed.average_gradients(..., extra=loss)`: a NaN on any process
makes it NaN everywhere) and the gradients are the averaged ones.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from cvg_fast.errors import CvgError


class NonFiniteGuard:
    """Per-step bookkeeping of non-finite updates for the networks `modules` (G, D)."""

    def __init__(self, modules: list[nn.Module], max_in_row: int, skipped: int = 0):
        if max_in_row < 1:
            raise CvgError(f"--max-nonfinite-steps {max_in_row}: must be >= 1")
        self.modules = modules
        self.max_in_row = max_in_row
        self.skipped = skipped  # steps skipped in this run so far (kept in checkpoints)
        self.in_row = 0
        self.rollbacks = 0
        self.bad: str | None = None  # the current step's first non-finite update, if any
        self._snapshot: list[torch.Tensor] = []
        self._rolled_back_to: set[int] = set()

    def _buffers(self) -> list[torch.Tensor]:
        return [b for m in self.modules for b in m.buffers()]

    def begin_step(self) -> None:
        """Remember the buffers (small: BN statistics, SN vectors) as they are now."""
        self.bad = None
        bufs = self._buffers()
        if [(b.shape, b.dtype, b.device) for b in self._snapshot] != \
                [(b.shape, b.dtype, b.device) for b in bufs]:
            self._snapshot = [b.detach().clone() for b in bufs]
        elif bufs:
            torch._foreach_copy_(self._snapshot, [b.detach() for b in bufs])

    def update_ok(self, name: str, loss: torch.Tensor, module: nn.Module) -> bool:
        """Is the update of `module` for (averaged) `loss` finite, loss and gradients?
        Call after the gradient all-reduce, before the optimiser step; False marks the
        step bad (the caller skips this and the step's later updates)."""
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        vals = [loss.detach().float().reshape(1)]
        if grads:
            vals.append(torch.stack(torch._foreach_norm(grads)).float())
        ok = bool(torch.cat(vals).isfinite().all())
        if not ok and self.bad is None:
            self.bad = f"{name} = {float(loss):g}" if not torch.isfinite(loss).all() else \
                f"{name} gradients"
        return ok

    def end_step(self) -> bool:
        """Count the step; if it was bad, put the buffers back. Returns whether it was."""
        if self.bad is None:
            self.in_row = 0
            return False
        with torch.no_grad():
            torch._foreach_copy_(self._buffers(), self._snapshot)
        self.skipped += 1
        self.in_row += 1
        return True

    @property
    def rollback_due(self) -> bool:
        return self.in_row >= self.max_in_row

    def rolling_back(self, at_step: int, to_step: int | None) -> None:
        """Before a rollback from `at_step` to the checkpoint of `to_step` (None: there is
        none): a one-line CvgError where it cannot help, else count it."""
        advice = "lower --lr-g / --lr-d, or use --amp none"
        if to_step is None:
            raise CvgError(f"step {at_step}: {self.in_row} non-finite steps in a row "
                           f"(last: {self.bad}) and no checkpoint yet to roll back to; {advice}")
        if to_step in self._rolled_back_to:
            raise CvgError(f"step {at_step}: {self.in_row} non-finite steps in a row again "
                           f"after rolling back to step {to_step} (last: {self.bad}); {advice}")
        self._rolled_back_to.add(to_step)
        self.rollbacks += 1
        self.in_row = 0
