"""GradientStepper: accumulation averages what it really accumulated; skipped AMP steps do not
move the LR schedule; clipping reports the norm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from baton.optim import GradientStepper


def linear() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(3, 1, bias=False)


def grads_after(stepper: GradientStepper, model: nn.Linear, batches: list[torch.Tensor]) -> torch.Tensor:
    stepper.start_group(len(batches))
    for x in batches[:-1]:
        assert stepper.step(model(x).sum()) == {}
    stepper.optimizer.step = lambda: None  # keep weights still: we look at the gradient only
    grad = []
    stepper.optimizer.zero_grad = lambda set_to_none=True: grad.append(model.weight.grad.clone())
    stepper.step(model(batches[-1]).sum())
    return grad[0]


@pytest.mark.parametrize("group", [3, 2])
def test_accumulated_gradient_is_the_mean_over_the_group(group: int) -> None:
    batches = [torch.randn(4, 3) for _ in range(group)]
    model = linear()
    stepper = GradientStepper(torch.optim.SGD(model.parameters(), lr=0.1))
    expected = torch.stack([x.sum(0) for x in batches]).mean(0, keepdim=True)
    torch.testing.assert_close(grads_after(stepper, model, batches), expected)


def test_update_steps_optimizer_and_scheduler_and_zeroes_grads() -> None:
    model = linear()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda update: 0.5**update)
    stepper = GradientStepper(optimizer, scheduler, max_norm=1e-3)
    before = model.weight.detach().clone()
    metrics = stepper.step(model(torch.ones(2, 3)).sum() * 100)
    assert metrics["lr"] == 0.5 and metrics["grad_norm"] > 1e-3
    assert torch.linalg.norm(model.weight.detach() - before).item() == pytest.approx(1e-3, rel=1e-4)  # clipped
    assert model.weight.grad is None


def test_skipped_amp_step_does_not_step_the_scheduler() -> None:
    """A real GradScaler (its CPU flavour) sees an inf gradient and skips the update."""
    model = linear()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda update: 0.5**update)
    stepper = GradientStepper(optimizer, scheduler, scaler=torch.amp.GradScaler("cpu"))
    before = model.weight.detach().clone()
    stepper.step(model(torch.full((1, 3), float("inf"))).sum())
    assert torch.equal(model.weight, before)
    assert scheduler.last_epoch == 0 and stepper.skipped_updates == 1
    stepper.step(model(torch.ones(1, 3)).sum())
    assert scheduler.last_epoch == 1 and not torch.equal(model.weight, before)


def test_state_round_trip() -> None:
    model = linear()
    optimizer = torch.optim.Adam(model.parameters())
    stepper = GradientStepper(optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda u: 1 / (u + 1)),
                              scaler=torch.amp.GradScaler("cpu"))
    for _ in range(3):
        stepper.step(model(torch.randn(2, 3)).sum())
    state = stepper.state_dict()
    other_optimizer = torch.optim.Adam(linear().parameters())
    other = GradientStepper(other_optimizer,
                            torch.optim.lr_scheduler.LambdaLR(other_optimizer, lambda u: 1 / (u + 1)),
                            scaler=torch.amp.GradScaler("cpu"))
    other.load_state_dict(state)
    assert other.scheduler.last_epoch == 3
    assert other_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"] == 1e-3 / 4
    assert other.scaler.get_scale() == stepper.scaler.get_scale()
    assert torch.equal(other.optimizer.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
