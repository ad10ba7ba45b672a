"""Runtime helpers: batch sizes for weighting, batch moves, and start-up config checks."""

from __future__ import annotations

import pytest
import torch

from baton.data.collate import AudioBatch
from baton.errors import ConfigError
from baton.solver.runtime import batch_size_of, per_rank_batch_size, to_device
from baton.solver.settings import LoopSettings
from tests.helpers import example_config


def test_batch_size_of_common_batch_shapes() -> None:
    assert batch_size_of(torch.zeros(7, 3)) == 7
    assert batch_size_of((torch.zeros(5, 2), torch.zeros(5))) == 5
    assert batch_size_of({"wav": torch.zeros(3, 1, 10), "names": ["a", "b", "c"]}) == 3
    audio = AudioBatch(wav=torch.zeros(6, 1, 100), lengths=torch.full((6,), 100))
    assert batch_size_of(audio) == 6  # weights its metrics by items, not 1 per batch
    assert batch_size_of((audio, torch.zeros(6))) == 6 and batch_size_of([audio]) == 6
    assert batch_size_of(("a name", torch.zeros(4))) == 4  # strings are not batches


def test_to_device_keeps_structure() -> None:
    moved = to_device({"x": torch.ones(2), "pair": (torch.zeros(1), "tag")}, torch.device("cpu"))
    assert moved["pair"][1] == "tag" and torch.equal(moved["x"], torch.ones(2))


@pytest.mark.parametrize("override, message", [
    ("optim.grad_accumulation=0", "optim.grad_accumulation=0; it must be >= 1"),
    ("optim.accumulation_remainder=stepp", "optim.accumulation_remainder='stepp'; use drop or step"),
    ("optim.updates_per_epoch=0", "optim.updates_per_epoch=0; use null or >= 1"),
    ("best_metric.direction=up", "best_metric.direction='up'; use min or max"),
])
def test_bad_loop_settings_fail_at_start(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LoopSettings.from_config(example_config("unused", override))


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="dataset.batch_size=0"):
        per_rank_batch_size(0)
