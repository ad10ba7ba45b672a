"""Optimizers and LR schedules from config sections."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from baton.errors import ConfigError
from baton.optim import Lamb, build_lr_scheduler, build_optimizer, param_groups

OPTIM = OmegaConf.create(
    {"optimizer": "adamw", "lr": 1e-2, "betas": [0.9, 0.99], "eps": 1e-8, "momentum": 0.9,
     "weight_decay": 0.1, "decay_norms_and_biases": False}
)


def schedule(**kw):
    base = {"lr_scheduler": "none", "warmup": 0, "final_lr_ratio": 0.0, "step_size": 10, "gamma": 0.5}
    return OmegaConf.create({**base, **kw})


def net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))


def test_norms_and_biases_get_no_weight_decay() -> None:
    decay, no_decay = param_groups(net(), 0.1, decay_norms_and_biases=False)
    assert [p.shape for p in decay["params"]] == [torch.Size([8, 4]), torch.Size([2, 8])]
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 4
    (everything,) = param_groups(net(), 0.1, decay_norms_and_biases=True)
    assert len(everything["params"]) == 6


@pytest.mark.parametrize("name, cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                       ("sgd", torch.optim.SGD), ("lamb", Lamb)])
def test_each_optimizer_trains(name: str, cls: type) -> None:
    torch.manual_seed(0)
    model = net()
    optimizer = build_optimizer(model, OmegaConf.merge(OPTIM, {"optimizer": name}))
    assert isinstance(optimizer, cls)
    x, y = torch.randn(64, 4), torch.randn(64, 2)
    first = None
    for _ in range(50):
        loss = nn.functional.mse_loss(model(x), y)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first


def test_unknown_optimizer_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="optim.optimizer='adamm' is unknown; choose one of adam, adamw"):
        build_optimizer(net(), OmegaConf.merge(OPTIM, {"optimizer": "adamm"}))


def lrs(cfg, total: int = 100) -> list[float]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_lr_scheduler(optimizer, cfg, total)
    values = []
    for _ in range(total):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


def test_schedules() -> None:
    assert build_lr_scheduler(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1), schedule(), 10) is None
    cosine = lrs(schedule(lr_scheduler="cosine", warmup=10, final_lr_ratio=0.1))
    assert cosine[0] == pytest.approx(0.1) and cosine[9] == pytest.approx(1.0)
    assert cosine[-1] == pytest.approx(0.1, abs=1e-3) and cosine[50] < cosine[20]
    warm = lrs(schedule(lr_scheduler="linear_warmup", warmup=4))
    assert warm[:5] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    step = lrs(schedule(lr_scheduler="step", step_size=10, gamma=0.5))
    assert step[9] == 1.0 and step[10] == 0.5 and step[20] == 0.25
    inv = lrs(schedule(lr_scheduler="inverse_sqrt", warmup=4))
    assert inv[3] == pytest.approx(1.0) and inv[15] == pytest.approx(math.sqrt(4 / 16))
    with pytest.raises(ConfigError, match="schedule.lr_scheduler='cosinus'"):
        lrs(schedule(lr_scheduler="cosinus"))
