"""Probes of a training dataset's randomness, for `baton check-resume`'s diagnosis.

An exact resume needs each item to be a function of (seed, epoch, index) alone. Two ways a
user's dataset breaks that are told apart here, by fetching the same items under controlled
conditions (after training, in the training process, on the live dataset):

- it draws from a global RNG (`random`, `numpy.random`, `torch`'s default generator) in
  `__getitem__`: the same item fetched twice, with the global generators seeded differently
  in between, differs. (With `dataset.num_workers=0` such a dataset may even resume exactly,
  since the checkpoint restores the main process's RNG; with workers it does not.)
- a `set_epoch` that does not just take the epoch it is given (it counts its calls, say): the
  same item after `set_epoch(e)` once and after it twice differs. The dataset whose own call
  changes the item is named.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from baton.data.epochs import epoch_aware, set_epoch
from baton.stateful import capture_rng, restore_rng
from baton.xp.resume_record import digest_of

PROBED_ITEMS = (0, 1)


def _seed_globals(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _items(dataset: Any) -> str:
    return digest_of([dataset[index] for index in PROBED_ITEMS if index < len(dataset)])


def probe_dataset(dataset: Any, epoch: int) -> dict[str, Any]:
    """What breaks (seed, epoch, item) in `dataset` at data epoch `epoch`.

    Returns:
        {"global_rng": whether items follow the global generators,
         "set_epoch": the class name of the dataset whose repeated `set_epoch(epoch)` changes
         the items, or None}. The global generators are left as they were found.
    """
    saved = capture_rng()
    try:
        set_epoch(dataset, epoch)
        _seed_globals(1)
        first = _items(dataset)
        _seed_globals(2)
        global_rng = _items(dataset) != first
        _seed_globals(1)
        before = _items(dataset)
        culprit = None
        for candidate in epoch_aware(dataset):  # inner ones first, as the engine calls them
            candidate.set_epoch(epoch)
            _seed_globals(1)
            after = _items(dataset)
            if after != before:
                culprit = type(candidate).__name__
                break
        return {"global_rng": global_rng, "set_epoch": culprit}
    finally:
        restore_rng(saved)


def probe_solver_data(solver: Any) -> dict[str, Any] | None:
    """`probe_dataset` on the solver's training data at its stream's epoch; None when the data
    cannot be fetched by index (an iterable dataset)."""
    stream = solver.training_stream()
    dataset = stream.loader.dataset
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        return None
    return probe_dataset(dataset, stream.epoch)
