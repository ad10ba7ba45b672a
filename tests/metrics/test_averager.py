"""Averager: the stage mean is the mean over items, whatever the batch sizes."""

from __future__ import annotations

import torch

from baton.metrics.averager import Averager


def test_weighted_by_batch_size() -> None:
    average = Averager()
    average.update({"loss": torch.tensor(1.0)}, count=30)
    average.update({"loss": 4.0, "acc": 0.5}, count=10)
    assert average.result() == {"acc": 0.5, "loss": (30 * 1.0 + 10 * 4.0) / 40}
    assert average.local() == average.result()


def test_state_round_trip() -> None:
    average = Averager()
    average.update({"loss": 2.0}, count=3)
    other = Averager()
    other.load_state_dict(average.state_dict())
    other.update({"loss": 6.0}, count=1)
    assert other.result() == {"loss": 3.0}
