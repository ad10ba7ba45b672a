"""SpeechBrain's guard against non-finite losses, as a Brain applies it.

SpeechBrain counts non-finite *batches* in a row (a finite one resets the count) and stops
after `nonfinite_patience` of them; the recipe calls `check_loss_isfinite` from its own
`fit_batch`. The engine's guard (`GradientStepper`, `optim.nonfinite_patience`) counts updates
and needs no call; a Brain keeps SpeechBrain's, with one difference: the update of a bad batch
is skipped on every rank, agreed at its end, so DDP stays in step.
"""

from __future__ import annotations

import logging
import math

import torch

from .. import distrib
from ..errors import NonFiniteLossError

logger = logging.getLogger("baton.solver")


def finite(loss: torch.Tensor) -> bool:
    """No NaN/inf in `loss`: for a scalar, one read of its value (a torch op per batch costs
    more than the rest of the Brain's bookkeeping on a small model)."""
    if loss.numel() == 1:
        return math.isfinite(loss.item())
    return bool(torch.isfinite(loss).all())


class NonFiniteGuard:
    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.in_a_row = 0  # non-finite losses in a row (SpeechBrain's nonfinite_count)
        self.losses = 0  # in the running train stage
        self._in_update = False  # the running update had one, on this rank
        self._exhausted = False

    def check(self, loss: torch.Tensor, epoch: int, batch: int) -> bool:
        """False for a NaN/inf loss. Past the patience, one process stops at once; several
        stop together at the update's end (`skip_update`)."""
        if finite(loss):
            self.in_a_row = 0
            return True
        self.in_a_row += 1
        self.losses += 1
        self._in_update = True
        if self.in_a_row > self.patience:
            self._exhausted = True
            if not distrib.is_distributed():
                raise self.error(epoch, batch)
        else:
            logger.warning(
                "loss is not finite at epoch %d, batch %d (%d in a row, patience %d): this update is skipped",
                epoch, batch, self.in_a_row, self.patience,
            )
        return False

    def skip_update(self, epoch: int, batch: int) -> bool:
        """At an update's end: whether any rank had a non-finite loss in it (every rank skips,
        or none). Collective under DDP."""
        flags = [float(self._in_update), float(self._exhausted)]
        if distrib.is_distributed():
            flags = distrib.all_reduce_max(flags)
        self._in_update = False
        if flags[1]:
            raise self.error(epoch, batch)
        return bool(flags[0])

    def start_update(self) -> None:
        self._in_update = False

    def error(self, epoch: int, batch: int) -> NonFiniteLossError:
        return NonFiniteLossError(
            f"loss was not finite for {self.in_a_row} batch(es) in a row at epoch {epoch}, "
            f"batch {batch} (nonfinite_patience={self.patience}): training stopped; "
            "lower the learning rate, check the data, or run fit() under torch.autograd.detect_anomaly()"
        )
