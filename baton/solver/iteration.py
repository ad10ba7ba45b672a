"""How batches reach a solver: training one update at a time, evaluation one pass at a time.

Training is iterated by update, not by batch: an `Update` holds the micro-batches of one
optimizer update, and can be walked once per optimizer. A GAN (or any front end with several
optimizers) runs forward and backward over all micro-batches for its first optimizer, steps it,
then walks the same micro-batches for the next one, which sees the first one's new weights.
Update bookkeeping (the count, EMA, saves, stop signals) happens when the caller asks for the
next update, that is, at the boundary.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .. import distrib
from ..data.epochs import set_epoch as set_dataset_epoch
from ..data.stream import BatchStream
from ..errors import ConfigError
from ..logging import ResultLogger
from ..metrics.averager import Averager
from ..optim.ema import ModuleEMA
from ..optim.stepper import GradientStepper
from .cadence import Cadence
from .profiling import UpdateProfiler
from .runtime import Interrupted, batch_size_of
from .settings import LoopSettings
from .stage import Stage


class Update:
    """The micro-batches of one optimizer update.

    Attributes:
        index: the update's number within the epoch (0-based).
        batches: its micro-batches, fetched from the training stream.
        first_batch: the epoch-level index of its first micro-batch.
    """

    __slots__ = ("index", "batches", "first_batch", "consumed")

    def __init__(self, index: int, batches: list[Any], first_batch: int) -> None:
        self.index = index
        self.batches = batches
        self.first_batch = first_batch
        self.consumed = False  # every micro-batch was handed out at least once

    def __len__(self) -> int:
        return len(self.batches)

    def micro_batches(self, *steppers: Any) -> Iterator[tuple[int, Any]]:
        """(batch index, batch) for each micro-batch, for the optimizers of `steppers`.

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
            if micro + 1 == size:
                self.consumed = True
            if not holding:
                yield self.first_batch + micro, batch
                continue
            with contextlib.ExitStack() as accumulating:
                for stepper in holding:
                    accumulating.enter_context(stepper.micro_batch())
                yield self.first_batch + micro, batch


def group_size(update: int, accumulation: int, num_batches: int | None) -> int:
    """Micro-batches of update number `update`: the accumulation, or what is left of a full
    pass of `num_batches` for the last, short group."""
    if num_batches is None:
        return accumulation
    return min(accumulation, num_batches - update * accumulation)


def iterate_updates(
    stream: BatchStream,
    *,
    start: int,
    num_updates: int,
    accumulation: int,
    num_batches: int | None,
    after_update: Callable[[bool], None],
) -> Iterator[Update]:
    """Updates `start` .. `num_updates - 1` of an epoch, drawn from `stream`.

    `after_update(closing)` runs at each boundary. When the caller stops early (breaks out of
    its loop) after the last micro-batch of an update was handed out, that update is counted
    too, with `closing=True`: it must not raise (no save or stop decision is taken there).
    """
    for index in range(start, num_updates):
        size = group_size(index, accumulation, num_batches)
        update = Update(index, [stream.next() for _ in range(size)], index * accumulation)
        try:
            yield update
        except GeneratorExit:
            if update.consumed:
                after_update(True)
            raise
        after_update(False)


def evaluation_batches(
    loader: Any, *, seed: int, max_items: int | None, advance: Callable[[], None]
) -> Iterator[tuple[int, Any]]:
    """One deterministic pass over an evaluation loader (valid, evaluate), stopping after the
    batch that reaches `max_items` items over all ranks (each rank takes its share)."""
    set_dataset_epoch(loader.dataset, 0)
    sampler: Any = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(0)
    if getattr(loader, "generator", None) is not None:
        loader.generator.manual_seed(seed)
    cap = None if max_items is None else -(-int(max_items) // distrib.world_size())
    seen = 0
    for idx, batch in enumerate(loader):
        yield idx, batch
        advance()
        seen += batch_size_of(batch)
        if cap is not None and seen >= cap:
            break


def all_micro_batches(updates: Iterable[Update], steppers: list[Any]) -> Iterator[tuple[int, Any]]:
    """The per-batch view of training: every micro-batch of every update, for all steppers."""
    for update in updates:
        if len(update.batches) == 1:  # the common case, without a generator per update
            for stepper in steppers:
                stepper.start_group(1)
            update.consumed = True
            yield update.first_batch, update.batches[0]
        else:
            yield from update.micro_batches(*steppers)


class TrainingIteration:
    """The solver's batch methods: training by update (`train_updates`) or by batch
    (`train_batches`), and evaluation passes (`loader_batches`). Mixed into BaseSolver, whose
    attributes it uses (declared below for readers and type checkers)."""

    settings: LoopSettings
    dataloaders: dict[str, Any]
    result_logger: ResultLogger
    stage_metrics: Averager
    stage: Stage | None
    epoch: int
    update: int
    train_done: int
    ema: ModuleEMA | None
    profiler: UpdateProfiler
    cadence: Cadence
    _train_stream: BatchStream | None

    steppers: Callable[[], list[GradientStepper]]  # BaseSolver's
    save_checkpoint: Callable[..., None]  # Checkpointing's
    wait_for_saves: Callable[[], None]  # Checkpointing's

    def updates_per_epoch(self, batches: int | None = None) -> int:
        """Updates in one epoch; `batches` (one full pass, per rank) when the caller knows it."""
        s = self.settings
        if s.updates_per_epoch is not None:
            return s.updates_per_epoch
        if batches is None:
            batches = len(self._train_batches_stream())
        groups, remainder = divmod(batches, s.grad_accumulation)
        updates = groups + (1 if remainder and s.accumulation_remainder == "step" else 0)
        if updates == 0:
            raise ConfigError(
                f"an epoch has no update: {batches} training batch(es) per rank for "
                f"optim.grad_accumulation={s.grad_accumulation}; lower dataset.batch_size or "
                "the accumulation, or add data"
            )
        return updates

    def _train_batches_stream(self) -> BatchStream:
        if self._train_stream is None:
            if "train" not in self.dataloaders:
                raise ConfigError("the solver has no 'train' dataloader; set self.dataloaders['train'] in build")
            self._train_stream = BatchStream(self.dataloaders["train"], seed=self.settings.seed)
        return self._train_stream

    def train_updates(self) -> Iterator[Update]:
        """This epoch's training updates, each holding its micro-batches (see `iteration`).

        At each boundary it counts the update, steps the EMA, and saves a mid-epoch checkpoint
        when one is due or a stop signal came. A full pass whose length is not a multiple of the
        accumulation ends with a short group (`optim.accumulation_remainder=step`) or drops it.
        """
        stream = self._train_batches_stream()
        full_pass = self.settings.updates_per_epoch is None
        num_batches = len(stream) if full_pass else None
        num_updates = self.updates_per_epoch(num_batches)
        progress = self.result_logger.progress(
            f"Train {self.epoch}", num_updates, self.stage_metrics.local, start=self.train_done
        )

        def after_update(closing: bool) -> None:
            self._count_update()
            progress.advance()
            if not closing:
                self._save_or_stop()

        self.profiler.start()
        self.cadence.distributed = distrib.is_distributed()
        completed = False
        try:
            yield from iterate_updates(
                stream, start=self.train_done, num_updates=num_updates,
                accumulation=self.settings.grad_accumulation, num_batches=num_batches,
                after_update=after_update,
            )
            completed = True
        except GeneratorExit:  # the caller stopped early: this epoch's train stage is over
            completed = True
            raise
        finally:
            progress.close()
            if completed:
                if full_pass:
                    stream.next_epoch()
                # No checkpoint is written between here and commit, so the count can be reset.
                self.train_done = 0

    def train_batches(self) -> Iterator[tuple[int, Any]]:
        """Per-batch view of `train_updates`: (batch index, batch), for every stepper at once."""
        return all_micro_batches(self.train_updates(), self.steppers())

    def _count_update(self) -> None:
        self.train_done += 1
        self.update += 1
        if self.ema is not None and self.update % self.settings.ema_every == 0:
            self.ema.update()
        self.profiler.step()

    def _save_or_stop(self) -> None:
        stop, save = self.cadence.after_update(self.update)
        if stop is not None:
            self.save_checkpoint(end_of_epoch=False)
            self.wait_for_saves()
            raise Interrupted(stop, self.epoch)
        if save:
            self.save_checkpoint(end_of_epoch=False)

    def loader_batches(self, loader: Any, max_items: int | None = None) -> Iterator[tuple[int, Any]]:
        """One deterministic pass over an evaluation loader (valid, evaluate), stopping after the
        batch that reaches `max_items` items over all ranks."""
        title = self.stage.value.capitalize() if self.stage else "Eval"
        total = len(loader) if hasattr(loader, "__len__") else None
        progress = self.result_logger.progress(f"{title} {self.epoch}", total, self.stage_metrics.local)
        try:
            yield from evaluation_batches(loader, seed=self.settings.seed, max_items=max_items, advance=progress.advance)
        finally:
            progress.close()
