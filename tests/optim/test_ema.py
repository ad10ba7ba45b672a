"""The bias-corrected EMA is the exact decay-weighted mean of the weights seen so far."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from baton.optim import ModuleEMA


def test_average_is_bias_corrected() -> None:
    model = nn.Linear(1, 1, bias=False)
    ema = ModuleEMA({"model": model}, decay=0.9)
    values = [1.0, 2.0, 4.0, 8.0]
    for value in values:
        model.weight.data.fill_(value)
        ema.update()
    weights = [0.9 ** (len(values) - 1 - i) for i in range(len(values))]
    expected = sum(w * v for w, v in zip(weights, values, strict=False)) / sum(weights)
    assert ema.averages["model"]["weight"].item() == pytest.approx(expected)


def test_first_update_is_the_weights_themselves() -> None:
    model = nn.Linear(3, 2)
    ema = ModuleEMA({"model": model}, decay=0.999)
    ema.update()
    torch.testing.assert_close(ema.averages["model"]["weight"], model.weight.detach())


def test_swapped_restores_live_weights_and_averages_are_float32() -> None:
    model = nn.Linear(2, 2).to(torch.bfloat16)
    ema = ModuleEMA({"model": model}, decay=0.5)
    ema.update()
    assert ema.averages["model"]["weight"].dtype is torch.float32
    live = model.weight.detach().clone()
    model.weight.data.add_(1)
    ema.update()
    moved = model.weight.detach().clone()
    with ema.swapped():
        assert not torch.equal(model.weight, moved)
    assert torch.equal(model.weight, moved) and not torch.equal(live, moved)


def test_state_round_trip() -> None:
    model = nn.Linear(2, 2)
    ema = ModuleEMA({"model": model}, decay=0.9)
    ema.update()
    other = ModuleEMA({"model": nn.Linear(2, 2)}, decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.9 and other.num_updates == 1
    assert torch.equal(other.averages["model"]["weight"], ema.averages["model"]["weight"])
