"""Length-bucketed batches for variable-length audio, resumable and distributed-aware.

Padding a 1 s clip to the 20 s clip next to it in a batch wastes 95% of that row's compute.
Like SpeechBrain's DynamicBatchSampler, items are grouped into buckets of similar duration and
each batch is filled up to a budget of padded audio (`max_batch_length` seconds = batch size x
longest item), so batches of short items hold more of them.

The whole epoch's batch list is a function of (seed, epoch), computed identically on every
rank; rank r takes batches r, r + W, r + 2W, ... of it. Every rank therefore runs the same
number of steps (the list is padded by wrapping around, or truncated with `drop_last`), and
`set_epoch(epoch, start=batches_done)` resumes mid-epoch with the very same batches.

Unlike `ResumableSampler`'s, this order depends on the world size W: the budget is per rank and
each rank takes whole batches of the list, so an update trains on W batches of it (the global
batch grows with W), and a position saved on W ranks (`start`, batches of one rank) marks
another place in the list on another world size. A checkpoint resumed on another number of
ranks therefore trains on another sequence (the rest of the data epoch repeats or skips
batches); `BatchStream` logs a warning when it does. Resume a bucketed XP on the world size it
was saved on. (Keeping the order would take a global budget split among ranks within each
batch, which changes what `max_batch_length` means.)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from .. import distrib
from .rng import derive_seed

# Salt so the bucketed order is not correlated with ResumableSampler's order for the same seed.
_SALT = 0xB0C4E7


class BucketBatchSampler(Sampler[list[int]]):
    """Yields lists of indices; pass it as `batch_sampler` (see `build_loader`).

    Args:
        durations: seconds per item, e.g. `AudioDataset.durations()`.
        max_batch_length: budget of padded seconds per batch (batch size x longest item).
        num_buckets: buckets of equal item count, split at duration quantiles.
        max_batch_size: optional cap on items per batch.
        shuffle: shuffle items within buckets and the order of batches, per (seed, epoch).
        drop_last: under distributed training, drop the last batches that do not fill every
            rank instead of repeating batches from the start.

    An item longer than `max_batch_length` gets a batch of its own rather than being dropped.
    """

    def __init__(
        self,
        durations: Sequence[float],
        *,
        max_batch_length: float,
        num_buckets: int = 10,
        max_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
    ) -> None:
        if not durations:
            raise ValueError("BucketBatchSampler needs at least one item")
        if max_batch_length <= 0:
            raise ValueError(f"max_batch_length must be positive, got {max_batch_length}")
        self.durations = [float(d) for d in durations]
        self.max_batch_length = float(max_batch_length)
        self.max_batch_size = max_batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank, self.world_size = distrib.resolve_rank(rank, world_size)
        self.drop_last = drop_last
        ordered = sorted(self.durations)
        count = max(1, min(num_buckets, len(ordered)))
        # Upper edges at quantiles; duplicates collapse when many items share a duration.
        self.boundaries = sorted({ordered[min(len(ordered) - 1, (len(ordered) * k) // count)] for k in range(1, count)})
        self.epoch = 0
        self.start = 0
        self._batches = self.order(0)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select data epoch `epoch`'s batches, skipping this rank's first `start` batches."""
        batches = self.order(epoch)
        if not 0 <= start <= len(batches):
            raise ValueError(f"start {start} outside 0..{len(batches)} batches")
        self.epoch = epoch
        self.start = start
        self._batches = batches

    def global_batches(self, epoch: int) -> list[list[int]]:
        """All ranks' batches of `epoch`, before they are dealt out to ranks."""
        if self.shuffle:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch, _SALT))
            items = torch.randperm(len(self.durations), generator=gen).tolist()
        else:
            items = sorted(range(len(self.durations)), key=lambda i: self.durations[i])
        buckets: list[list[int]] = [[] for _ in range(len(self.boundaries) + 1)]
        for item in items:
            buckets[bisect.bisect_left(self.boundaries, self.durations[item])].append(item)
        batches = [batch for bucket in buckets for batch in self._pack(bucket)]
        if self.shuffle:
            perm = torch.randperm(len(batches), generator=gen).tolist()
            batches = [batches[i] for i in perm]
        return batches

    def order(self, epoch: int) -> list[list[int]]:
        """This rank's batches for `epoch`; the same count on every rank."""
        batches = self.global_batches(epoch)
        if self.drop_last:
            per_rank = len(batches) // self.world_size
        else:
            per_rank = math.ceil(len(batches) / self.world_size)
        total = per_rank * self.world_size
        if total > len(batches):
            # Wrap around so every rank runs the same number of steps.
            batches = (batches * math.ceil(total / len(batches)))[:total]
        return batches[self.rank : total : self.world_size]

    def _pack(self, bucket: list[int]) -> list[list[int]]:
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0.0
        for item in bucket:
            length = self.durations[item]
            grown = max(longest, length)
            full = self.max_batch_size is not None and len(current) >= self.max_batch_size
            if current and (full or grown * (len(current) + 1) > self.max_batch_length):
                batches.append(current)
                current, grown = [], length
            current.append(item)
            longest = grown
        if current:
            batches.append(current)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches[self.start :])

    def __len__(self) -> int:
        return len(self._batches) - self.start
