"""BaseSolver: the training loop, top to bottom.

    run
      prepare      compile and, on several ranks, wrap trainable modules in DDP (or shard them: FSDP)
      restore      the XP's checkpoint, if any
      for each epoch until optim.epochs (or until `should_stop()`):
        run_epoch  its stages, each through run_stage:
                     train      run_updates: optim.updates_per_epoch updates (or one full pass),
                                each one a call of the front end's `one_update`, then end_update
                     valid      with the EMA weights when EMA is on
                     evaluate   every evaluate.every epochs and at the last one, with the best state
                     generate   every generate.every epochs and at the last one, with the best state
        commit     history, early stop, checkpoint, history.jsonl

`end_update` is the update boundary, called by the loop after each update: the count, the EMA
step, a save when one is due (`cadence`), and a stop when a signal came, agreed across ranks.
What a solver holds and registers is `core.SolverCore`; where training stands is
`loop_state.LoopState`. Everything that shapes the future of training is in the checkpoint, so
an XP killed at any update and run again ends with the same weights as one never stopped.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import torch

from .. import distrib
from ..data.epochs import set_epoch as set_dataset_epoch
from ..errors import ConfigError
from ..metrics.averager import Averager
from .core import SolverCore
from .runtime import Interrupted, batch_size_of
from .stage import Stage

logger = logging.getLogger("baton.solver")


class UpdateBatches:
    """The micro-batches of one optimizer update.

    Attributes:
        index: the update's number within the epoch (0-based).
        batches: its micro-batches, drawn from the training stream.
        first_batch: the epoch-level index of its first micro-batch.
    """

    __slots__ = ("index", "batches", "first_batch")

    def __init__(self, index: int, batches: list[Any], first_batch: int) -> None:
        self.index = index
        self.batches = batches
        self.first_batch = first_batch

    def __len__(self) -> int:
        return len(self.batches)

    def micro_batches(self, *steppers: Any) -> Iterator[tuple[int, Any]]:
        """(batch index, batch) for each micro-batch, for the optimizers of `steppers`. A GAN
        walks them once per optimizer: the second one sees the first one's new weights.

        Tells each stepper how many micro-batches the update holds (its loss is averaged over
        them) and keeps DDP in `no_sync` during all but the last one. The caller's forward and
        backward run while this generator is suspended inside those contexts, which DDP needs:
        it decides in the forward whether the backward will reduce.
        """
        size = len(self.batches)
        for stepper in steppers:
            stepper.start_group(size)
        holding = [s for s in steppers if s.wraps_ddp] if size > 1 else []
        for micro, batch in enumerate(self.batches):
            if not holding:
                yield self.first_batch + micro, batch
                continue
            with contextlib.ExitStack() as accumulating:
                for stepper in holding:
                    accumulating.enter_context(stepper.micro_batch())
                yield self.first_batch + micro, batch


class UpdateObserver(Protocol):
    """What watches the training updates from outside the task (`baton check-resume` records
    each update's data and state through one). None by default: the loop then pays one
    attribute test per update, nothing more."""

    def drawn(self, solver: BaseSolver, update: UpdateBatches, position: dict[str, int] | None) -> None:
        """The update's micro-batches were drawn from the stream, which stood at `position`."""

    def ended(self, solver: BaseSolver) -> None:
        """The update is counted and the EMA stepped; the cadence (saves, stops) comes next."""


def group_size(update: int, accumulation: int, num_batches: int | None) -> int:
    """Micro-batches of update number `update`: the accumulation, or what is left of a full
    pass of `num_batches` for the last, short group."""
    if num_batches is None:
        return accumulation
    return min(accumulation, num_batches - update * accumulation)


class BaseSolver(SolverCore):
    """The loop over a solver's state. Front ends give it stages (`stages()`) and, for training,
    a function of one update (`run_updates(one_update)`); see StandardSolver."""

    def run(self) -> list[dict[str, dict[str, float]]]:
        """Train to `optim.epochs`, resuming from the XP folder's checkpoint. Returns the history.

        The log stays open afterwards (evaluate again, inspect); `close()` it, or use the
        solver as a context manager.
        """
        with self.training():
            self.prepare()
            self.restore()
            while not self.finished:
                self.run_epoch()
                self.commit()
                self.stop_if_signalled()
        return self.history

    @contextmanager
    def training(self) -> Iterator[None]:
        """Around a training run: stop signals are caught (the loop checkpoints and stops at
        the next update), and background saves are finished on the way out."""
        self.result_logger.start_tracking()  # a tracker that cannot start stops the run here
        self.cadence.signal.install()
        try:
            yield
        except Interrupted as stop:
            saved = "checkpoint saved; run again to resume" if self.settings.save else "checkpoint.save=false: nothing saved"
            logger.info("%s, %s", stop.describe(), saved)
            raise
        finally:
            self.cadence.signal.uninstall()
            self.wait_for_saves()
            self.profiler.stop()

    def run_epoch(self) -> None:
        for stage, run_stage in self.stages():
            if stage.value in self.loop_state.epoch_results:  # done before a mid-epoch restart
                continue
            metrics = self.run_stage(stage, run_stage)
            self.loop_state.epoch_results[stage.value] = metrics
            self.best.update(stage.value, metrics, self.best_candidate)

    def run_stage(
        self, stage: Stage, run_stage: Callable[[], dict[str, float]], name: str | None = None,
        epoch: int | None = None,
    ) -> dict[str, float]:
        """Run one stage with its modules' train/eval mode, hooks, and summary logged as `name`."""
        self.stage = stage = Stage.of(stage)
        for module in self.registered_modules().values():
            module.train(stage is Stage.TRAIN)
        self.stage_metrics = Averager()
        if self.restored_stage_metrics is not None and stage is Stage.TRAIN:
            self.stage_metrics = Averager.from_rank_states(self.restored_stage_metrics)
            self.restored_stage_metrics = None
        self.before_stage(stage)
        steppers = self.steppers()
        before = [(s.skipped_updates, s.nonfinite_losses) for s in steppers]
        start = time.monotonic()
        with torch.set_grad_enabled(stage is Stage.TRAIN):
            metrics = run_stage()
        if stage is Stage.TRAIN:
            metrics.update(self._stepper_counts(steppers, before))
        self.after_stage(stage, metrics)
        self.stage = None
        self.result_logger.log_summary(name or stage.value, epoch or self.epoch, metrics)
        logger.debug("%s took %.1fs", name or stage.value, time.monotonic() - start)
        return metrics

    def _stepper_counts(self, steppers: list[Any], before: list[tuple[int, int]]) -> dict[str, float]:
        """The train stage's skipped steps (fp16 loss scaling) and non-finite losses (summed
        over ranks), per stepper, for the steppers that can have them."""
        counts: dict[str, float] = {}
        for stepper, (skipped, nonfinite) in zip(steppers, before, strict=True):
            if stepper.scaler is not None:
                counts[stepper.prefix + "skipped_steps"] = float(stepper.skipped_updates - skipped)
            if stepper.nonfinite_patience is not None:
                counts[stepper.prefix + "nonfinite_losses"] = float(stepper.nonfinite_losses - nonfinite)
        summed = [key for key in counts if key.endswith("nonfinite_losses")]
        if summed and distrib.is_distributed():
            totals = distrib.all_reduce_sum([counts[key] for key in summed])
            counts.update(zip(summed, totals, strict=True))
        return counts

    # ----------------------------------------------------------------- training updates
    def run_updates(
        self, one_update: Callable[[UpdateBatches], Any], stop_when: Callable[[], bool] | None = None,
    ) -> None:
        """The train stage's updates: for each update left in this epoch, its micro-batches are
        drawn, `one_update(update)` runs them (forward, backward, optimizer steps), and the
        loop ends the update (`end_update`). `stop_when()`, checked before each update, ends
        the stage early (e.g. a step limit).

        A full pass whose length is not a multiple of the accumulation ends with a short group
        (`optim.accumulation_remainder=step`) or drops it.
        """
        loop = self.loop_state
        stream = self.training_stream()
        full_pass = self.settings.updates_per_epoch is None
        num_batches = len(stream) if full_pass else None
        num_updates = self.updates_per_epoch(num_batches)
        accumulation = self.settings.grad_accumulation
        progress = self.result_logger.progress(
            f"Train {loop.epoch}", num_updates, self.stage_metrics.local, start=loop.train_done
        )
        self.profiler.start()
        self.cadence.distributed = distrib.is_distributed()
        try:
            for index in range(loop.train_done, num_updates):
                if stop_when is not None and stop_when():
                    break
                size = group_size(index, accumulation, num_batches)
                observer = self.update_observer
                position = stream.state_dict() if observer is not None else None
                update = UpdateBatches(index, [stream.next() for _ in range(size)], index * accumulation)
                if observer is not None:
                    observer.drawn(self, update, position)
                one_update(update)
                self.end_update()
                progress.advance()
        finally:
            progress.close()
        # The stage is over (an interruption raised above, keeping train_done for the resume).
        if full_pass:
            stream.next_epoch()
        loop.train_done = 0  # no checkpoint is written between here and commit

    def end_update(self) -> None:
        """The update boundary: count it, step the EMA, then save when due, or save and stop when
        a stop signal came (both agreed across ranks, see `cadence`)."""
        loop = self.loop_state
        loop.train_done += 1
        loop.update_count += 1
        if self.ema is not None and loop.update_count % self.settings.ema_every == 0:
            self.ema.update()
        self.profiler.step()
        if self.update_observer is not None:  # before the cadence: a stop it asks for is obeyed here
            self.update_observer.ended(self)
        stop, save = self.cadence.after_update(loop.update_count)
        if stop is not None:
            self.save_checkpoint(end_of_epoch=False)
            self.wait_for_saves()
            raise Interrupted(stop, loop.epoch)
        if save:
            self.save_checkpoint(end_of_epoch=False)

    def updates_per_epoch(self, batches: int | None = None) -> int:
        """Updates in one epoch; `batches` (one full pass, per rank) when the caller knows it."""
        s = self.settings
        if s.updates_per_epoch is not None:
            return s.updates_per_epoch
        if batches is None:
            batches = len(self.training_stream())
        groups, remainder = divmod(batches, s.grad_accumulation)
        updates = groups + (1 if remainder and s.accumulation_remainder == "step" else 0)
        if updates == 0:
            raise ConfigError(
                f"an epoch has no update: {batches} training batch(es) per rank for "
                f"optim.grad_accumulation={s.grad_accumulation}; lower dataset.batch_size or "
                "the accumulation, or add data"
            )
        return updates

    @property
    def total_updates(self) -> int:
        """Updates in the whole run, for LR schedules."""
        return self.settings.epochs * self.updates_per_epoch()

    # ----------------------------------------------------------------- evaluation passes
    def loader_batches(self, loader: Any, max_items: int | None = None) -> Iterator[tuple[int, Any]]:
        """One deterministic pass over an evaluation loader (valid, evaluate), stopping after the
        batch that reaches `max_items` items over all ranks (each rank takes its share)."""
        title = self.stage.value.capitalize() if self.stage else "Eval"
        total = len(loader) if hasattr(loader, "__len__") else None
        progress = self.result_logger.progress(f"{title} {self.epoch}", total, self.stage_metrics.local)
        set_dataset_epoch(loader.dataset, 0)
        sampler: Any = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(0)
        if getattr(loader, "generator", None) is not None:
            loader.generator.manual_seed(self.settings.seed)
        cap = None if max_items is None else -(-int(max_items) // distrib.world_size())
        seen = 0
        try:
            for idx, batch in enumerate(loader):
                yield idx, batch
                progress.advance()
                seen += batch_size_of(batch)
                if cap is not None and seen >= cap:
                    break
        finally:
            progress.close()

    def should_run_every(self, every: int | None) -> bool:
        """True for stages that run every N epochs, and always at the last epoch."""
        if self.epoch == self.settings.epochs:
            return True
        return every is not None and every > 0 and self.epoch % every == 0

    # ----------------------------------------------------------------- the end of an epoch
    def commit(self) -> None:
        """End an epoch: history, early-stop decision, checkpoint, then history.jsonl (never
        ahead of the checkpoint)."""
        loop = self.loop_state
        loop.end_epoch()
        stop = float(bool(self.should_stop()))
        if distrib.is_distributed():
            stop = distrib.all_reduce_max([stop])[0]  # every rank stops, or none
        if stop and not self.finished:
            logger.info("should_stop() after epoch %d: training ends early", loop.epoch - 1)
            loop.stopped_early = True
        self.save_checkpoint(end_of_epoch=True)
        self.result_logger.write_history(loop.history)

    def stop_if_signalled(self) -> None:
        """After a commit: a stop signal that came during valid/evaluate/generate ends the run
        here (the epoch is whole in the checkpoint); after the last epoch, the run is done."""
        stop = self.cadence.stop_at_epoch_end()
        if stop is not None and not self.finished:
            raise Interrupted(stop, self.epoch - 1)

    def evaluate_stage(self, name: str, run_stage: Callable[[], dict[str, float]], best: str | None = None) -> dict[str, float]:
        """Run an evaluation outside the epoch loop (e.g. after training, on another test set),
        with the best state of metric `best` (`best_metric` when None) loaded.

        Its metrics are logged as `name`, added under that name to the last epoch's history,
        and checkpointed, so `baton info` and a later run see them.
        """
        if not self.history:
            self.restore()
        with self.swap_best_state(best), self.gathered():
            metrics = self.run_stage(Stage.EVALUATE, run_stage, name=name, epoch=len(self.history) or None)
        if self.history:
            self.history[-1][name] = metrics
            self.save_checkpoint(end_of_epoch=False)
            self.result_logger.write_history(self.history)
        return metrics
