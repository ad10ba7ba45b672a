"""The Brain's DataLoaders: an order that is a function of (seed, epoch), resumable mid-epoch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

from .. import distrib
from ..data.rng import derive_seed, seed_worker
from ..data.sampler import ResumableSampler
from ..solver.stage import Stage

_LOADER_SALT = 0xB4A1  # the loader generator's seed, apart from the sampler's


def brain_dataloader(dataset: Any, stage: Stage, seed: int, loader_kwargs: Mapping[str, Any]) -> DataLoader:
    """See `Brain.make_dataloader`."""
    kwargs = dict(loader_kwargs)
    if "sampler" in kwargs or "batch_sampler" in kwargs or isinstance(dataset, IterableDataset):
        return DataLoader(dataset, **kwargs)
    shuffle = bool(kwargs.pop("shuffle", False))
    drop_last = bool(kwargs.pop("drop_last", False))
    # Training data is shared out between ranks; valid and test sets are not, as in
    # SpeechBrain: every rank sees all of them, so metrics a recipe gathers itself agree.
    training = Stage.of(stage) is Stage.TRAIN
    rank, world = (None, None) if training else (0, 1)
    # Padded to whole global batches, so the items of an update do not depend on the world size.
    size = kwargs.get("batch_size")
    global_batch = int(size) * distrib.world_size() if training and size else None
    sampler = ResumableSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last, rank=rank,
                               world_size=world, global_batch=global_batch)
    kwargs.setdefault("worker_init_fn", seed_worker)
    kwargs.setdefault("generator", torch.Generator().manual_seed(derive_seed(seed, _LOADER_SALT)))
    return DataLoader(dataset, sampler=sampler, drop_last=drop_last, **kwargs)
