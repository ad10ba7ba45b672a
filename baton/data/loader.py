"""`build_loader`: a DataLoader wired for exact resume (positioned by `stream.BatchStream`).

What makes it resume-exact:
- the order comes from a `ResumableSampler` (or a resumable batch sampler) set per epoch;
- a padded training sampler wraps around to a multiple of the global batch (per-rank batch x
  world size), so the items of each update, all ranks together, do not depend on the world size
  and a checkpoint resumes on another number of ranks in the same global order (see `sampler`);
- workers are not persistent, so each new iterator pickles the dataset with its current epoch;
- the loader owns a `generator`: without one, every new iterator draws its base seed from the
  global torch RNG, and merely starting an epoch would shift the training randomness.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .. import distrib
from ..errors import ConfigError
from .collate import collate_audio
from .rng import derive_seed, seed_worker
from .sampler import ResumableSampler
from .stream import no_batch_error

# Keeps the loader's generator independent of the sampler's, which is seeded by (seed, epoch).
_LOADER_SALT = 0x10AD


def build_loader(
    dataset: Dataset,
    *,
    batch_size: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
    num_workers: int = 0,
    collate_fn: Callable[[list[Any]], Any] = collate_audio,
    drop_last: bool = False,
    batch_sampler: Sampler[list[int]] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    pin_memory: bool = False,
    prefetch_factor: int | None = None,
    pad: bool = True,
) -> DataLoader:
    """A DataLoader whose order is a function of (seed, epoch).

    Args:
        batch_size: per-rank batch size (the solver divides the global one). Ignored with
            `batch_sampler`.
        drop_last: drop a last, smaller batch; also passed to the sampler, which then drops
            instead of wrapping around to give every rank the same count.
        batch_sampler: e.g. a `BucketBatchSampler`; replaces the ResumableSampler.
        rank, world_size: default to the current process group's.
        pad: give every rank as many items as the largest shard, wrapping around (training:
            every rank runs the same number of steps) to a multiple of the global batch
            (`batch_size` x world size), so that the order, all ranks together, is the same on
            any world size. False for evaluation: each item on exactly one rank, so means over
            ranks count it once.

    Raises:
        ConfigError: with `drop_last`, fewer items per rank than one batch (the loader would
            yield nothing); the message names items, batch size and world size. Fewer
            evaluation items (`pad=False`) than ranks.
    """
    generator = torch.Generator().manual_seed(derive_seed(seed, _LOADER_SALT))
    extra: dict[str, Any] = {}
    if num_workers > 0 and prefetch_factor is not None:
        extra["prefetch_factor"] = prefetch_factor
    common = dict(
        num_workers=num_workers,
        collate_fn=collate_fn,
        worker_init_fn=seed_worker,
        persistent_workers=False,
        generator=generator,
        pin_memory=pin_memory,
        **extra,
    )
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, **common)
    if batch_size is None:
        raise ValueError("build_loader needs batch_size or batch_sampler")
    _, world = distrib.resolve_rank(rank, world_size)
    try:
        sampler = ResumableSampler(dataset, shuffle=shuffle, seed=seed, rank=rank,  # type: ignore[arg-type]
                                   world_size=world_size, drop_last=drop_last, pad=pad,
                                   global_batch=batch_size * world)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if drop_last and sampler.per_rank < batch_size:
        # Caught here, before a model is built, rather than at the first training step.
        raise no_batch_error(items=sampler.num_items, per_rank=sampler.per_rank,
                             batch_size=batch_size, world_size=sampler.world_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **common)

