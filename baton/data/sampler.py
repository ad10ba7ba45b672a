"""A sampler whose order is a function of (seed, epoch) and that can start mid-epoch.

The solver records how many samples of the current data epoch were consumed; on resume it
calls `set_epoch(epoch, start=consumed)` and the sampler yields the rest of the very same order.
Under distributed training, training samplers give every rank the same number of indices
(padded by wrapping around, or truncated with `drop_last`) so no rank waits forever on a
collective. Evaluation samplers (`pad=False`) give each item to exactly one rank instead, so
that a mean over all ranks counts every item once; their shards differ by one item at most.

Rank r takes positions r, r + W, r + 2W, ... of the epoch's order, so batch k of every rank
together is positions k*G to k*G + G - 1 of it (G = per-rank batch x W): what the ranks train on
together depends on the global batch, not on how many ranks share it. That is what lets a
checkpoint written on W ranks resume on another number of ranks in the same global order,
provided the end of the epoch does not depend on W either. Wrapping around to a multiple of W
would make it do so (90 items, G = 8: the last batch holds 2 items on 1 rank, 4 on 4 ranks); a
training sampler told its `global_batch` wraps around to a multiple of G instead, so every
batch, the last one included, holds G items, the same ones for any W that divides G.
`drop_last` needs no such help: floor(floor(N / W) / b) = floor(N / G) full batches per rank,
the first floor(N / G) * G positions of the order, whatever W.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized

import torch
from torch.utils.data import Sampler

from .. import distrib
from .rng import derive_seed


class ResumableSampler(Sampler[int]):
    """The indices of one rank, for one data epoch at a time (`set_epoch`).

    Args:
        data: the dataset, or its number of items.
        shuffle: a permutation seeded by (seed, epoch); else 0, 1, 2, ...
        rank, world_size: default to the current process group's.
        drop_last: give each rank floor(N / W) items (training; the DataLoader then drops the
            short last batch with its own `drop_last`). Pass the DataLoader's value here too, as
            `build_loader` does: padded to `global_batch`, the order has no short batch for
            the DataLoader to drop, and an epoch would keep ceil(N / G) batches.
        pad: give every rank as many items as the largest share, wrapping around (training).
            False: each item on exactly one rank (evaluation).
        global_batch: the batch of all ranks together (per-rank batch x world size). When
            padding (pad=True, drop_last=False), wrap around to a multiple of it rather than of
            the world size, so that the items of every update, all ranks together, are the same
            for any world size that divides it (see the module docstring). The number of
            batches per data epoch is ceil(N / global_batch) either way. Ignored otherwise.

    Raises:
        ValueError: `global_batch` is not a positive multiple of the world size; fewer
            evaluation items than ranks (pad=False).
    """

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
        global_batch: int | None = None,
    ) -> None:
        self.num_items = data if isinstance(data, int) else len(data)
        self.shuffle = shuffle
        self.seed = seed
        self.rank, self.world_size = distrib.resolve_rank(rank, world_size)
        self.drop_last = drop_last
        self.pad = pad
        if global_batch is not None and (global_batch < 1 or global_batch % self.world_size):
            raise ValueError(
                f"global batch {global_batch} is not a positive multiple of the world size "
                f"{self.world_size}; pass the per-rank batch size times the world size"
            )
        self.global_batch = global_batch
        if drop_last:
            self.per_rank = self.num_items // self.world_size
        elif pad and global_batch is not None:
            self.per_rank = math.ceil(self.num_items / global_batch) * (global_batch // self.world_size)
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
