"""From a loss to an optimizer update: accumulation, loss scaling, clipping, scheduling.

A solver owns one `GradientStepper` per optimizer (a GAN has two), each with its own GradScaler,
clipping norm and count of skipped steps: one optimizer's inf gradients must not shrink the
other's loss scale. In `run_step` it calls `metrics.update(stepper.step(loss))`; a named stepper
prefixes its metrics (`disc_lr`), so several can report into one metrics dict. The solver tells
each stepper how many micro-batches the current update holds (`start_group`); the stepper

- divides the loss by that number, so a short last group is averaged over what it really has;
- offers `micro_batch()`, a context that puts DDP in `no_sync` for all but the last micro-batch
  (one all-reduce per update). DDP decides in the *forward* whether the backward will reduce,
  so the context must hold the forward and the backward: the solver enters it around each
  `run_step`; a hand-written loop writes `with stepper.micro_batch(): stepper.step(loss_fn())`;
- on the last micro-batch, unscales (fp16), clips, steps the optimizer and then the scheduler,
  except when the GradScaler skipped the step for inf/nan gradients: then the scheduler waits
  too, so the LR schedule follows real updates;
- guards against non-finite losses (`nonfinite_patience`, None: off): a NaN/inf loss is not
  backpropagated and its whole update is skipped (no optimizer or scheduler step, gradients
  zeroed) and counted; `patience + 1` such updates in a row raise `NonFiniteLossError`. Under
  DDP ranks must agree without an extra collective: a rank with a bad loss backpropagates it
  times NaN, the all-reduce spreads the NaN, and every rank reads the same verdict from the
  reduced gradients' norm (`skip_nonfinite_grads` asks for that check on one process too).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import NonFiniteLossError


def syncs_gradients(module: nn.Module) -> bool:
    """Whether `module` reduces gradients across ranks in its backward: DDP, or FSDP2 (a module
    `fully_shard` changed in place, recognised without importing FSDP)."""
    return isinstance(module, DistributedDataParallel) or hasattr(module, "set_requires_gradient_sync")


@contextlib.contextmanager
def _fsdp_no_sync(module: Any) -> Iterator[None]:
    module.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)


def held_sync(modules: Iterable[nn.Module], hold: bool = True) -> contextlib.ExitStack:
    """A context that holds back the gradient reduction of every DDP or FSDP module in
    `modules` (the micro-batches of an update but its last). DDP decides in the forward whether
    the backward reduces, so the context must hold both."""
    stack = contextlib.ExitStack()
    if hold:
        for module in modules:
            if isinstance(module, DistributedDataParallel):
                stack.enter_context(module.no_sync())
            elif syncs_gradients(module):
                stack.enter_context(_fsdp_no_sync(module))
    return stack


def whole(norm: torch.Tensor) -> torch.Tensor:
    """A norm over sharded gradients (a DTensor under FSDP) as a plain tensor, alike on every rank."""
    full = getattr(norm, "full_tensor", None)
    return full() if full is not None else norm


class OptimizerGroup:
    """Several optimizers stepped as one update (a Brain's `optimizers_dict`): one GradScaler
    unscales and steps them together, one norm clips all their parameters."""

    def __init__(self, optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        self.optimizers = dict(optimizers)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [group for optimizer in self.optimizers.values() for group in optimizer.param_groups]

    def step(self) -> None:
        for optimizer in self.optimizers.values():
            optimizer.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state[name])


class GradientStepper:
    def __init__(
        self,
        optimizer: torch.optim.Optimizer | OptimizerGroup,
        scheduler: Any = None,
        *,
        modules: Iterable[nn.Module] = (),
        max_norm: float | None = None,
        scaler: Any = None,
        name: str | None = None,
        nonfinite_patience: int | None = None,
        skip_nonfinite_grads: bool = False,
    ) -> None:
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.modules = list(modules)
        self.max_norm = max_norm
        self.scaler = scaler
        self.group_size = 1
        self.micro = 0
        self.skipped_updates = 0
        self.prefix = f"{name}_" if name else ""
        self.name = name
        self.nonfinite_patience = nonfinite_patience
        self.skip_nonfinite_grads = skip_nonfinite_grads
        self.nonfinite_losses = 0  # non-finite losses seen (each skipped its update)
        self.nonfinite_in_a_row = 0  # updates skipped for them since the last good one
        self._bad_loss = False  # the running update had a non-finite loss on this rank

    def start_group(self, size: int) -> None:
        """Announce that the next `size` calls to `step` form one update."""
        if size < 1:
            raise ValueError(f"an update needs at least one micro-batch, got {size}")
        self.group_size = size
        self.micro = 0

    @property
    def last_micro_batch(self) -> bool:
        return self.micro + 1 >= self.group_size

    @property
    def wraps_ddp(self) -> bool:
        """Whether `micro_batch()` has any gradient sync to hold back (DDP or FSDP)."""
        return any(syncs_gradients(module) for module in self.modules)

    @contextlib.contextmanager
    def micro_batch(self) -> Iterator[None]:
        """Hold one micro-batch's forward and backward: no DDP gradient sync unless it is the last."""
        with held_sync(self.modules, not self.last_micro_batch):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        if self.nonfinite_patience is not None and not math.isfinite(loss.item()):
            self.nonfinite_losses += 1
            self._bad_loss = True
            if not self.wraps_ddp:
                return  # nothing to backpropagate: the update will be skipped
            loss = loss * math.nan  # every rank's reduced gradients turn NaN: all skip alike
        if self.group_size != 1:  # x / 1 == x exactly: skip an op and its autograd node
            loss = loss / self.group_size
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        loss.backward()

    def step(self, loss: torch.Tensor | None = None) -> dict[str, Any]:
        """Backward `loss` (if given); on the group's last micro-batch, update the weights.

        Returns the update's metrics (`grad_norm` when clipping, `lr`), or {} while accumulating.
        Steps the GradScaler skipped are counted in `skipped_updates` (the engine reports them
        per train stage as `skipped_steps`).
        """
        if loss is not None:
            self.backward(loss)
        if not self.last_micro_batch:
            self.micro += 1
            return {}
        self.micro = 0
        return self.finish_update()

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def finish_update(self, before_step: Callable[[], None] | None = None) -> dict[str, Any]:
        """The update's end, after the backward of its last micro-batch: unscale (fp16), clip,
        `before_step()` (a Brain's gradient check), step the optimizer and the scheduler unless
        the update is skipped (non-finite loss, or the GradScaler found inf), zero the gradients."""
        metrics: dict[str, Any] = {}
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        norm = None
        if self.max_norm is not None:
            norm = whole(torch.nn.utils.clip_grad_norm_(self._params(), self.max_norm))
            metrics[self.prefix + "grad_norm"] = norm
        if self._nonfinite_update(norm):
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:  # unscale_ was called: the scaler expects a step
                self.scaler.update()
            metrics[self.prefix + "lr"] = self.optimizer.param_groups[0]["lr"]
            return metrics
        if before_step is not None:
            before_step()
        stepped = True
        if self.scaler is not None:
            scale_before = self.scaler.get_scale()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            stepped = self.scaler.get_scale() >= scale_before
        else:
            self.optimizer.step()
        if stepped and self.scheduler is not None:
            self.scheduler.step()
        if not stepped:
            self.skipped_updates += 1
        self.optimizer.zero_grad(set_to_none=True)
        metrics[self.prefix + "lr"] = self.optimizer.param_groups[0]["lr"]
        return metrics

    def _nonfinite_update(self, norm: torch.Tensor | None) -> bool:
        """Whether this update is skipped for a non-finite loss (or gradients); raises after
        `nonfinite_patience + 1` of them in a row."""
        if self.nonfinite_patience is None and not self.skip_nonfinite_grads:
            return False
        bad, self._bad_loss = self._bad_loss, False
        if self.wraps_ddp or self.skip_nonfinite_grads:  # the reduced gradients decide, alike on every rank
            if norm is None:
                grads = [p.grad for p in self._params() if p.grad is not None]
                norm = whole(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))) if grads else None
            bad = norm is not None and not math.isfinite(norm.item())
        if not bad:
            self.nonfinite_in_a_row = 0
            return False
        self.nonfinite_in_a_row += 1
        patience = self.nonfinite_patience
        if patience is not None and self.nonfinite_in_a_row > patience:
            which = f"optimizer '{self.name}'" if self.name else "the optimizer"
            raise NonFiniteLossError(
                f"the loss of {which} was NaN/inf for {self.nonfinite_in_a_row} update(s) in a row "
                f"(optim.nonfinite_patience={patience}); lower optim.lr, set optim.max_norm, check "
                "the data, or raise optim.nonfinite_patience"
            )
        return True

    def state_dict(self) -> dict[str, Any]:
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "skipped_updates": self.skipped_updates,
        }
        if self.nonfinite_losses:  # only once there was one: the state of a healthy run keeps format 2's keys
            state.update(nonfinite_losses=self.nonfinite_losses, nonfinite_in_a_row=self.nonfinite_in_a_row)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.skipped_updates = state["skipped_updates"]
        self.nonfinite_losses = state.get("nonfinite_losses", 0)
        self.nonfinite_in_a_row = state.get("nonfinite_in_a_row", 0)
