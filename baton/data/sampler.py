"""A sampler whose order is a function of (seed, epoch) and that can start mid-epoch.

The solver records how many samples of the current data epoch were consumed; on resume it
calls `set_epoch(epoch, start=consumed)` and the sampler yields the rest of the very same order.
Under distributed training, training samplers give every rank the same number of indices
(padded by wrapping around, or truncated with `drop_last`) so no rank waits forever on a
collective. Evaluation samplers (`pad=False`) give each item to exactly one rank instead, so
that a mean over all ranks counts every item once; their shards differ by one item at most.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized

import torch
from torch.utils.data import Sampler

from .. import distrib
from .rng import derive_seed


class ResumableSampler(Sampler[int]):
    def __init__(
        self,
        data: Sized | int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        pad: bool = True,
    ) -> None:
        self.num_items = data if isinstance(data, int) else len(data)
        self.shuffle = shuffle
        self.seed = seed
        self.rank, self.world_size = distrib.resolve_rank(rank, world_size)
        self.drop_last = drop_last
        self.pad = pad
        if drop_last:
            self.per_rank = self.num_items // self.world_size
        elif pad:
            self.per_rank = math.ceil(self.num_items / self.world_size)
        else:
            if 0 < self.num_items < self.world_size:
                raise ValueError(
                    f"{self.num_items} evaluation item(s) for {self.world_size} ranks: every rank needs "
                    "at least one; add items or run on fewer ranks"
                )
            self.per_rank = len(range(self.rank, self.num_items, self.world_size))
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the order of data epoch `epoch`, skipping its first `start` indices (this rank's)."""
        if not 0 <= start <= self.per_rank:
            raise ValueError(f"start {start} outside 0..{self.per_rank}")
        self.epoch = epoch
        self.start = start

    def order(self, epoch: int) -> list[int]:
        """This rank's full index order for `epoch`."""
        if self.shuffle:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
            indices = torch.randperm(self.num_items, generator=gen).tolist()
        else:
            indices = list(range(self.num_items))
        if not self.pad and not self.drop_last:
            return indices[self.rank :: self.world_size]
        total = self.per_rank * self.world_size
        if total > len(indices):
            # Wrap around so every rank runs the same number of steps.
            repeats = math.ceil(total / max(len(indices), 1))
            indices = (indices * repeats)[:total]
        else:
            indices = indices[:total]
        return indices[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order(self.epoch)[self.start :])

    def __len__(self) -> int:
        return self.per_rank - self.start
