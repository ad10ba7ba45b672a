"""Batches from a DataLoader with a position that a checkpoint can hold: (data epoch, batches).

The solver draws training batches through a `BatchStream`. Its position is saved in every
checkpoint; on resume the stream asks the sampler to start where training stopped, so the
batches that follow are the ones an uninterrupted run would have seen. Before each new
DataLoader iterator the stream

- calls `dataset.set_epoch(epoch)` so per-item randomness can be drawn from (seed, epoch, index);
- calls the sampler's `set_epoch(epoch, start)` (a `ResumableSampler` skips `start` items; a
  batch sampler with the same method skips `start` batches);
- re-seeds the loader's `generator`, so creating an iterator never consumes the training RNG.

Loaders with other samplers still work, but resume then replays the skipped batches by
iterating, and is exact only if their order does not depend on global RNG state.
"""

from __future__ import annotations

import logging
from typing import Any

from torch.utils.data import DataLoader

from .rng import derive_seed
from .sampler import ResumableSampler

logger = logging.getLogger(__name__)


class BatchStream:
    def __init__(self, loader: DataLoader, seed: int = 0) -> None:
        if getattr(loader, "persistent_workers", False) and hasattr(loader.dataset, "set_epoch"):
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

    def _start(self) -> None:
        loader = self.loader
        dataset = loader.dataset
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.epoch)
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
        if loader.generator is not None:
            loader.generator.manual_seed(derive_seed(self.seed, self.epoch, self.position))
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
                raise RuntimeError("the training loader yields no batch: is the dataset empty?") from None
        self.position += 1
        return batch

    def next_epoch(self) -> None:
        """Leave the current data epoch (its remaining batches are not used)."""
        self._iterator = None
        self.epoch += 1
        self.position = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._iterator = None
        self.epoch = state["epoch"]
        self.position = state["position"]
