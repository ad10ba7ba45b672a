"""Running means of a stage's metrics, weighted by batch size, reduced across ranks on read.

Weighting by the number of items makes the mean of a stage equal the mean over its items even
when the last batch is short or ranks hold different amounts of data. CPU tensors are turned
into floats at once; CUDA tensors are summed on the device and read only when the mean is asked
for, so logging does not add a host sync to every step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .. import distrib


class Averager:
    def __init__(self) -> None:
        self._sums: dict[str, Any] = {}
        self._counts: dict[str, float] = {}

    def update(self, metrics: Mapping[str, Any], count: float = 1.0) -> None:
        sums, counts = self._sums, self._counts
        for key, value in metrics.items():
            if isinstance(value, torch.Tensor):
                value = value.item() if value.is_cpu else value.detach()
            if key in sums:
                sums[key] = sums[key] + value * count
                counts[key] += count
            else:
                sums[key] = value * count
                counts[key] = count

    def local(self) -> dict[str, float]:
        """Means over what this rank has seen (no communication; for progress display)."""
        return {k: float(self._sums[k]) / self._counts[k] for k in self._sums}

    def result(self) -> dict[str, float]:
        """Means over all ranks, each metric weighted by its own count. Collective."""
        reduced = self.reduced_state()
        return {k: total / reduced["counts"][k] for k, total in reduced["sums"].items()}

    def reduced_state(self) -> dict[str, Any]:
        """The state summed over all ranks. Collective."""
        keys = sorted(self._sums)
        distrib.check_same_on_all_ranks(keys, "metric names")
        totals = distrib.all_reduce_sum(
            [float(self._sums[k]) for k in keys] + [self._counts[k] for k in keys]
        )
        n = len(keys)
        return {"sums": dict(zip(keys, totals[:n], strict=True)),
                "counts": dict(zip(keys, totals[n:], strict=True))}

    def rank_states(self) -> list[dict[str, Any]]:
        """Every rank's own state, in rank order (collective): what a checkpoint keeps mid-stage.

        Each rank resumes with its own sums, so the reduced mean is bit-for-bit that of an
        uninterrupted run (float addition is not associative: pre-summing would change it).
        """
        return distrib.all_gather_object(self.state_dict())

    @classmethod
    def from_rank_states(cls, states: list[dict[str, Any]]) -> Averager:
        """This rank's Averager from `rank_states()`; after a change of world size, rank 0
        takes everything and the others start empty (same mean, up to rounding)."""
        average = cls()
        rank, world = distrib.rank(), distrib.world_size()
        if len(states) == world:
            average.load_state_dict(states[rank])
        elif rank == 0:
            for state in states:
                for key, total in state["sums"].items():
                    average.update({key: total / state["counts"][key]}, count=state["counts"][key])
        return average

    def state_dict(self) -> dict[str, Any]:
        return {"sums": {k: float(v) for k, v in self._sums.items()}, "counts": dict(self._counts)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._sums = dict(state["sums"])
        self._counts = dict(state["counts"])
