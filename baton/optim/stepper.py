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
  too, so the LR schedule follows real updates.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel


class GradientStepper:
    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: Any = None,
        *,
        modules: Iterable[nn.Module] = (),
        max_norm: float | None = None,
        scaler: Any = None,
        name: str | None = None,
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
        """Whether `micro_batch()` has any gradient sync to hold back."""
        return any(isinstance(module, DistributedDataParallel) for module in self.modules)

    @contextlib.contextmanager
    def micro_batch(self) -> Iterator[None]:
        """Hold one micro-batch's forward and backward: no DDP gradient sync unless it is the last."""
        with contextlib.ExitStack() as stack:
            if not self.last_micro_batch:
                for module in self.modules:
                    if isinstance(module, DistributedDataParallel):
                        stack.enter_context(module.no_sync())
            yield

    def backward(self, loss: torch.Tensor) -> None:
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
        return self._update()

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def _update(self) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.max_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(self._params(), self.max_norm)
            metrics[self.prefix + "grad_norm"] = norm
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

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "skipped_updates": self.skipped_updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.skipped_updates = state["skipped_updates"]
