"""Randomness for data as a pure function of (seed, epoch, index).

Shuffle order, segment offsets and augmentation drawn from these generators do not depend on
the number of DataLoader workers, nor on how many times the process was restarted, which is
what makes resume exact.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers; stable across processes and Python versions (no `hash()`)."""
    text = ":".join(str(int(p)) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The torch generator a dataset uses for item `index` in data epoch `epoch`."""
    return torch.Generator().manual_seed(derive_seed(seed, epoch, index))


def seed_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: seed python and numpy from torch's per-worker seed.

    Torch seeds each worker as base_seed + worker_id; without this, numpy and `random` would
    start identical in every worker. Datasets that want resume-exact randomness use
    `sample_generator` instead of these global generators.
    """
    worker_seed = torch.initial_seed() % 2**32
    random.seed(worker_seed)
    np.random.seed(worker_seed)
