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


def test_rank_states_round_trip_and_world_size_change() -> None:
    average = Averager()
    average.update({"loss": 1.0}, count=2)
    states = average.rank_states()  # one process: a list of one
    assert Averager.from_rank_states(states).result() == {"loss": 1.0}
    # Saved by two ranks, resumed on one: rank 0 takes both ranks' sums.
    other = Averager()
    other.update({"loss": 4.0}, count=1)
    merged = Averager.from_rank_states(states + other.rank_states())
    assert merged.result() == {"loss": (2 * 1.0 + 4.0) / 3}
