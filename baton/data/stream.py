"""Batches from a DataLoader with a position that a checkpoint can hold: (data epoch, batches).

The solver draws training batches through a `BatchStream`. Its position is saved in every
checkpoint; on resume the stream asks the sampler to start where training stopped, so the
batches that follow are the ones an uninterrupted run would have seen. Before each new
DataLoader iterator the stream

- calls `set_epoch(epoch)` on the loader's dataset and on every dataset it wraps (a Subset's,
  a ConcatDataset's, a user wrapper's inner dataset: see `baton.data.epochs`), so per-item
  randomness can be drawn from (seed, epoch, index) even behind a wrapper that does not forward
  the epoch;
- calls the sampler's `set_epoch(epoch, start)` (a `ResumableSampler` skips `start` items; a
  batch sampler with the same method skips `start` batches);
- re-seeds the loader's `generator`, so creating an iterator never consumes the training RNG.

Loaders with other samplers still work, but resume then replays the skipped batches by
iterating, and is exact only if their order does not depend on global RNG state.

The position counts batches of one rank, and also says on how many ranks (`world_size`). With
a `ResumableSampler` that pads to the global batch (or drops the last one), batch k of all
ranks together is the same chunk of the epoch's order on any world size, so a checkpoint
resumes on another number of ranks in the same global order, the global batch being fixed.
Loaders for which that does not hold (a `BucketBatchSampler`, which deals whole batches to
ranks; a sampler padded to the world size) get a warning when the world size changed.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch.utils.data import DataLoader

from .. import distrib
from ..errors import ConfigError
from .bucketing import BucketBatchSampler
from .epochs import epoch_aware, set_epoch
from .rng import derive_seed
from .sampler import ResumableSampler

logger = logging.getLogger(__name__)


def no_batch_error(*, items: int, per_rank: int, batch_size: int, world_size: int) -> ConfigError:
    """The one-line error for training data that cannot fill one batch of `batch_size` (per
    rank) when partial batches are dropped: it names the numbers and the fix.

    Args:
        items: items in the dataset; per_rank: this rank's share of them (what its sampler
            yields in one epoch).
    """
    if items == 0:
        return ConfigError(
            "no batch to train on: the training data has 0 items; check its manifest "
            "(and dataset.min_duration/max_duration) or add data"
        )
    fix = f"set dataset.batch_size to {per_rank * world_size} or less, " if per_rank else ""
    return ConfigError(
        f"no batch to train on: {items} item(s) give {per_rank} per rank on {world_size} "
        f"rank(s), fewer than one batch of {batch_size} per rank (global batch size "
        f"{batch_size * world_size}), and drop_last drops partial batches; {fix}"
        "set dataset.drop_last=false, or add data"
    )


class BatchStream:
    """The training batches of `loader`, epoch after epoch, from a position a checkpoint holds.

    Raises:
        ConfigError: (at construction) the loader cannot yield a single batch, e.g. fewer
            items than one batch with drop_last; the message names items, batch size and
            world size.
    """

    def __init__(self, loader: DataLoader, seed: int = 0) -> None:
        if getattr(loader, "persistent_workers", False) and epoch_aware(loader.dataset):
            raise ValueError(
                "persistent_workers=True keeps each worker's copy of the dataset, so "
                "dataset.set_epoch would not reach the workers; build the loader without it"
            )
        self.loader = loader
        self.seed = seed
        self.epoch = 0
        self.position = 0
        self._iterator: Any = None
        self._warned = False
        self._check_yields_batches()

    def _check_yields_batches(self) -> None:
        try:
            batches = len(self)
        except TypeError:
            return  # an iterable dataset: its length is unknown until it runs out
        if batches > 0:
            return
        loader = self.loader
        sampler: Any = loader.sampler
        try:
            items = len(loader.dataset)  # type: ignore[arg-type]
        except TypeError:
            items = 0
        if loader.batch_size is None:  # a batch sampler of the user's
            raise ConfigError(
                f"no batch to train on: the training loader's batch sampler yields none from "
                f"{items} item(s); lower its batch size or add data"
            )
        if isinstance(sampler, ResumableSampler):
            items, per_rank, world = sampler.num_items, sampler.per_rank, sampler.world_size
        else:
            per_rank, world = len(sampler), int(getattr(sampler, "num_replicas", 1))
        raise no_batch_error(items=items, per_rank=per_rank, batch_size=loader.batch_size, world_size=world)

    def _start(self) -> None:
        loader = self.loader
        set_epoch(loader.dataset, self.epoch)
        skip = 0
        batch_sampler = loader.batch_sampler
        if batch_sampler is not None and hasattr(batch_sampler, "set_epoch"):
            batch_sampler.set_epoch(self.epoch, start=self.position)
        elif isinstance(loader.sampler, ResumableSampler):
            loader.sampler.set_epoch(self.epoch, start=self.position * (loader.batch_size or 1))
        else:
            skip = self.position
            if skip and not self._warned:
                self._warned = True
                logger.warning(
                    "the loader's sampler cannot start mid-epoch; replaying %d batches to resume "
                    "(use baton.data.build_loader for exact, fast resume)",
                    skip,
                )
        seed = derive_seed(self.seed, self.epoch, self.position)
        if loader.generator is not None:
            loader.generator.manual_seed(seed)
            self._iterator = iter(loader)
        else:  # its base seed would come from the global RNG, which a resume has just restored
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self._iterator = iter(loader)
        for _ in range(skip):
            next(self._iterator)

    def __len__(self) -> int:
        """Batches in one full data epoch of this rank (whatever the current position)."""
        loader = self.loader
        if isinstance(loader.sampler, ResumableSampler) and loader.batch_size:
            items, size = loader.sampler.per_rank, loader.batch_size
            return items // size if loader.drop_last else -(-items // size)
        batch_sampler = loader.batch_sampler
        if batch_sampler is not None and hasattr(batch_sampler, "set_epoch"):
            # Its length counts the batches left after `start`: measure from the epoch's start.
            batch_sampler.set_epoch(self.epoch, start=0)
            return len(batch_sampler)  # type: ignore[arg-type]
        return len(loader)

    def next(self) -> Any:
        """The next batch; at the end of a data epoch, the first batch of the next one."""
        if self._iterator is None:
            self._start()
        try:
            batch = next(self._iterator)
        except StopIteration:
            self.next_epoch()
            self._start()
            try:
                batch = next(self._iterator)
            except StopIteration:
                raise ConfigError(
                    "no batch to train on: the training loader yields none; check that the "
                    "training data is not empty and holds at least one batch"
                ) from None
        self.position += 1
        return batch

    def next_epoch(self) -> None:
        """Leave the current data epoch (its remaining batches are not used)."""
        self._iterator = None
        self.epoch += 1
        self.position = 0

    def world_size(self) -> int:
        """The ranks the loader's sampler shares the data between: what a position counts in."""
        for part in (self.loader.batch_sampler, self.loader.sampler):
            world = getattr(part, "world_size", None)
            if isinstance(world, int):
                return world
        return distrib.world_size()

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "world_size": self.world_size()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._iterator = None
        self.epoch = state["epoch"]
        self.position = state["position"]
        saved, world = state.get("world_size"), self.world_size()  # absent from older checkpoints
        if saved is not None and saved != world:
            reason = order_depends_on_world_size(self.loader, saved, world)
            if reason is not None:
                logger.warning(
                    "training data position saved on %d rank(s), resumed on %d: %s; resume on "
                    "%d rank(s) to keep the data order", saved, world, reason, saved,
                )


def order_depends_on_world_size(loader: DataLoader, saved: int, world: int) -> str | None:
    """Why the training items of each update, all ranks together, differ between `saved` and
    `world` ranks with the same global batch; None when they do not (as far as it can tell).

    A `ResumableSampler` that drops the short last batch, or pads to the global batch, keeps
    them; one padded to the world size changes the last update of an epoch unless both world
    sizes give it the same items; a batch sampler that deals whole batches to ranks
    (`BucketBatchSampler`) changes every update and the meaning of the saved position.
    """
    sampler: Any = loader.sampler
    batch_sampler: Any = loader.batch_sampler
    if isinstance(sampler, ResumableSampler) and loader.batch_size:
        if sampler.drop_last or not sampler.pad or sampler.global_batch is not None:
            return None
        # Padded to a multiple of the world size: the last global batch holds the leftover
        # items rounded up to a multiple of it, unless the DataLoader drops it as too short.
        global_batch = loader.batch_size * world
        leftover = sampler.num_items % global_batch

        def last_batch(ranks: int) -> int:
            items = -(-leftover // ranks) * ranks
            return 0 if loader.drop_last and items < global_batch else items

        if last_batch(saved) == last_batch(world):
            return None
        return ("its ResumableSampler wraps around to a multiple of the world size, not of the "
                "global batch, so the last update of each data epoch trains on other items "
                "(build it with global_batch=, as build_loader does)")
    if loader.batch_size is None:
        name = type(batch_sampler).__name__
        if isinstance(batch_sampler, BucketBatchSampler):
            return (f"its {name} gives each rank whole batches of one list, so each update trains "
                    "on another number of batches and the saved position (batches of one rank) "
                    "points elsewhere in the data epoch")
        return f"its batch sampler ({name}) may deal batches to ranks otherwise"
    return f"its sampler ({type(sampler).__name__}) may deal items to ranks otherwise"
