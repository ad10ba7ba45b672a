"""Epoch loops that a Checkpointer saves and resumes, as SpeechBrain's `epoch_loop` does.

    epoch_counter = EpochCounter(limit=10)
    checkpointer = Checkpointer("ckpts", {"model": model, "counter": epoch_counter})
    checkpointer.recover_if_possible()
    for epoch in epoch_counter:  # 1 ... 10, starting after the last finished epoch
        train(); checkpointer.save_and_keep_only(meta={"loss": valid_loss})

Both classes work as `!new:baton.EpochCounter` in HyperPyYAML, and read the files SpeechBrain's
counters write.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from ..solver.loop_state import LoopState
from .hooks import mark_as_loader, mark_as_saver, register_checkpoint_hooks

logger = logging.getLogger(__name__)


@register_checkpoint_hooks
class EpochCounter:
    """Iterates over epochs 1 ... `limit` (not 0 ... limit-1), from where training left off.

    `current` is the epoch running now (0 before the first). Restored from an intra-epoch
    checkpoint (`end_of_epoch=False`), the interrupted epoch is run again.
    """

    def __init__(self, limit: int) -> None:
        self.current = 0
        self.limit = int(limit)

    def __iter__(self) -> EpochCounter:
        return self

    def __next__(self) -> int:
        if self.current < self.limit:
            self.current += 1
            logger.info("Going into epoch %d", self.current)
            return self.current
        raise StopIteration

    @mark_as_saver
    def _save(self, path: Path) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(str(self.current))

    @mark_as_loader
    def _recover(self, path: Path, end_of_epoch: bool = True) -> None:
        with open(path, encoding="utf-8") as handle:
            saved = int(handle.read().strip())
        self.current = saved if end_of_epoch else saved - 1


@register_checkpoint_hooks
class EpochCounterWithStopper(EpochCounter):
    """An EpochCounter that also stops early when a metric stops improving.

    Call `update_metric` once per epoch with the validation metric. After `limit_warmup`
    epochs, an epoch improves when the metric beats the best so far by a relative margin of
    `min_delta` (1e-6); once `limit_to_stop` epochs have passed since the best one,
    `should_stop` is set and the iteration ends.

    Args:
        limit: the most epochs to run.
        limit_to_stop: the patience: epochs without improvement before stopping.
        limit_warmup: epochs during which the metric is not tracked at all.
        direction: "min" (a loss, an error rate) or "max" (an accuracy).
    """

    def __init__(self, limit: int, limit_to_stop: int, limit_warmup: int, direction: str) -> None:
        super().__init__(limit)
        if limit_to_stop < 0:
            raise ValueError(f"EpochCounterWithStopper limit_to_stop must be >= 0, got {limit_to_stop}")
        if limit_warmup < 0:
            raise ValueError(f"EpochCounterWithStopper limit_warmup must be >= 0, got {limit_warmup}")
        if direction not in ("min", "max"):
            raise ValueError(f"EpochCounterWithStopper direction must be 'min' or 'max', got {direction!r}")
        self.limit_to_stop = limit_to_stop
        self.limit_warmup = limit_warmup
        self.direction = direction
        self.should_stop = False
        self.best_limit = 0  # the epoch of the best metric so far
        self.min_delta = 1e-6
        self.sign = 1 if direction == "min" else -1  # compare sign * metric: lower is better
        self.best_score = self.sign * float("inf")

    def __next__(self) -> int:
        if self.should_stop:
            raise StopIteration
        return super().__next__()

    def update_metric(self, current_metric: float) -> None:
        """Record this epoch's metric; call it once per epoch, after validation."""
        if self.current <= self.limit_warmup:
            return
        if self.sign * current_metric < self.sign * (1 - self.min_delta) * self.best_score:
            self.best_limit = self.current
            self.best_score = current_metric
        without_improvement = self.current - self.best_limit
        self.should_stop = without_improvement >= self.limit_to_stop
        if self.should_stop:
            logger.info(
                "%d epochs without improvement: patience of %d is exhausted, stopping",
                without_improvement, self.limit_to_stop,
            )

    @mark_as_saver
    def _save(self, path: Path) -> None:
        state = {
            "current_epoch": self.current,
            "best_epoch": self.best_limit,
            "best_score": float(self.best_score),
            "should_stop": self.should_stop,
        }
        with open(path, "w", encoding="utf-8") as handle:
            yaml.safe_dump(state, handle)

    @mark_as_loader
    def _recover(self, path: Path, end_of_epoch: bool = True) -> None:
        with open(path, encoding="utf-8") as handle:
            saved: Any = yaml.safe_load(handle)
        if not isinstance(saved, dict):  # a plain EpochCounter's file: the epoch alone
            saved = {"current_epoch": int(saved)}
        current = int(saved["current_epoch"])
        self.current = current if end_of_epoch else current - 1
        self.best_limit = int(saved.get("best_epoch", self.best_limit))
        self.best_score = float(saved.get("best_score", self.best_score))
        self.should_stop = bool(saved.get("should_stop", self.should_stop))


class FitEpochs:
    """The epochs `Brain.fit` runs: those of its epoch counter (an EpochCounter, or any iterable
    such as `range(n)`) from the engine's position, which a recovered checkpoint set."""

    def __init__(self, counter: Iterable[Any]) -> None:
        self.counter = counter
        self.values: list[Any] | None = None  # an iterable's epochs (an EpochCounter counts itself)

    def remaining(self, loop: LoopState, recovered: bool) -> Iterator[Any]:
        """An EpochCounter the Checkpointer did not restore is moved to the engine's epoch (or
        the engine to its, when it was restored from a checkpoint SpeechBrain wrote); an
        iterable is skipped ahead."""
        counter: Any = self.counter
        if hasattr(counter, "current") and hasattr(counter, "limit"):
            if not recovered and counter.current:
                loop.epoch = int(counter.current) + 1
            if counter.current != loop.epoch - 1:
                counter.current = loop.epoch - 1
            return iter(counter)
        self.values = list(counter)
        return iter(self.values[loop.epoch - 1:])

    def finished(self, loop: LoopState) -> bool:
        if loop.stopped_early:
            return True
        if self.values is not None:
            return loop.epoch - 1 >= len(self.values)
        counter: Any = self.counter
        return bool(counter.current >= counter.limit or getattr(counter, "should_stop", False))
