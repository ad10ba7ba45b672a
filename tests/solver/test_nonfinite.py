"""A NaN loss skips its update and is counted, in every front end that steps through the
engine's GradientStepper (`optim.nonfinite_patience`); patience + 1 in a row stop with one line.
The Brain's own guard is tested in tests/speechbrain/test_brain.py."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from baton.errors import NonFiniteLossError
from baton.solver.extensible import ExtensibleSolver
from baton.steps import Loss, register_loss
from baton.tasks.example import ExampleSolver
from tests.helpers import example_config
from tests.solver.extensible_configs import tiny_gan

FAST = ["logging.tensorboard=false", "task.num_train=64", "task.num_valid=32", "dataset.batch_size=16",
        "optim.epochs=1", "optim.updates_per_epoch=6"]


class NaNAt(ExampleSolver):
    """The example task, whose training loss is NaN at the updates (0-based counts) in `nan_at`;
    records the weights around every update."""

    nan_at: set[int] = set()

    def build_model(self) -> None:
        super().build_model()
        self.weights: list[torch.Tensor] = []

    def run_step(self, idx: int, batch: Any, metrics: dict[str, Any]) -> dict[str, Any]:
        if not self.is_training:
            return super().run_step(idx, batch, metrics)
        x, y = batch
        self.weights.append(self.model.net[0].weight.detach().clone())
        loss = torch.nn.functional.mse_loss(self.model(x), y)
        if self.update_count in self.nan_at:
            loss = loss * math.nan
        metrics.update(self.stepper.step(loss))
        return metrics


def run_nan_at(folder: Path, updates: set[int], *overrides: str) -> NaNAt:
    NaNAt.nan_at = updates
    with NaNAt(example_config(folder, *FAST, *overrides)) as solver:
        solver.run()
    return solver


def test_a_nan_loss_skips_its_update_and_is_counted(tmp_path: Path) -> None:
    solver = run_nan_at(tmp_path, {2})
    w = solver.weights + [solver.model.net[0].weight.detach()]
    assert torch.equal(w[2], w[3])  # update 2 left the weights as they were
    assert all(not torch.equal(w[i], w[i + 1]) for i in (0, 1, 3, 4, 5))  # the others moved
    assert torch.isfinite(w[-1]).all()
    assert solver.history[0]["train"]["nonfinite_losses"] == 1
    assert solver.update_count == 6  # a skipped update is still one of the epoch's updates


def test_patience_plus_one_in_a_row_stops_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLossError, match=r"NaN/inf for 3 update\(s\) in a row \(optim.nonfinite_patience=2\)"):
        run_nan_at(tmp_path / "a", {1, 2, 3}, "optim.nonfinite_patience=2")
    # A finite loss in between resets the count.
    solver = run_nan_at(tmp_path / "b", {1, 2, 4, 5}, "optim.nonfinite_patience=2")
    assert solver.history[0]["train"]["nonfinite_losses"] == 4


def test_the_guard_can_be_turned_off(tmp_path: Path) -> None:
    solver = run_nan_at(tmp_path, {2}, "optim.nonfinite_patience=null")
    assert torch.isnan(solver.model.net[0].weight).all()  # the NaN reached the weights
    assert "nonfinite_losses" not in solver.history[0]["train"]


def test_the_skip_is_resumed_exactly(tmp_path: Path) -> None:
    """The counters are in the stepper's checkpointed state: a run stopped after the NaN
    resumes to the same weights as one never stopped."""
    whole = run_nan_at(tmp_path / "whole", {1, 2}, "optim.nonfinite_patience=2")
    run_nan_at(tmp_path / "split", {1, 2}, "optim.nonfinite_patience=2", "optim.updates_per_epoch=3")
    split = run_nan_at(tmp_path / "split", {1, 2}, "optim.nonfinite_patience=2", "optim.epochs=2", "optim.updates_per_epoch=3")
    assert split.stepper.nonfinite_losses == whole.stepper.nonfinite_losses == 2
    assert torch.equal(split.model.net[0].weight, whole.model.net[0].weight)


@register_loss("test_nan_at")
class NaNAtLoss(Loss):
    """L1 between two keys, NaN at the updates listed."""

    def __init__(self, real: str, fake: str, updates: list[int]) -> None:
        self.real, self.fake, self.updates = real, fake, set(updates)

    def reads(self) -> list[str]:
        return [self.real, self.fake]

    def __call__(self, ctx: Any) -> torch.Tensor:
        loss = torch.nn.functional.l1_loss(ctx.state[self.fake], ctx.state[self.real])
        return loss * math.nan if ctx.update in self.updates else loss


def test_a_config_driven_step_skips_a_nan_update(synth_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_DATA_DIR", str(synth_cache))
    monkeypatch.setenv("BATON_XP_DIR", str(tmp_path / "xps"))
    networks = {"scale": {"type": "generator", "_target_": "torch.nn.Conv1d",
                          "in_channels": 1, "out_channels": 1, "kernel_size": 1}}
    steps = {"fit": {"training": "scale", "optimizer": "sgd", "optimizer_params": {"lr": 0.1, "momentum": 0.0},
                     "injectors": {"run": {"type": "generator", "generator": "scale", "in": "wav", "out": "out"}},
                     "losses": {"l1": {"type": "test_nan_at", "real": "wav", "fake": "out", "updates": [1], "weight": 1.0}}}}
    cfg = tiny_gan("optim.updates_per_epoch=3", "best_metric.name=l1", "generate.audio=[out]",
                   networks=networks, steps=steps, evaluators={})
    seen: list[torch.Tensor] = []

    class Recording(ExtensibleSolver):
        def train_step(self, step: Any, update: Any, states: list[Any]) -> dict[str, Any]:
            seen.append(self.networks["scale"].weight.detach().clone())
            return super().train_step(step, update, states)

    with Recording(cfg) as solver:
        history = solver.run()
    seen.append(solver.networks["scale"].weight.detach().clone())
    assert torch.equal(seen[1], seen[2]) and not torch.equal(seen[0], seen[1]) and not torch.equal(seen[2], seen[3])
    assert torch.isfinite(seen[-1]).all()
    assert history[0]["train"]["fit_nonfinite_losses"] == 1
    with pytest.raises(NonFiniteLossError, match="optimizer 'fit' was NaN/inf for 2 update"):
        steps["fit"]["losses"]["l1"]["updates"] = [0, 1, 2]
        Recording(tiny_gan("optim.updates_per_epoch=3", "best_metric.name=l1", "generate.audio=[out]",
                           "optim.nonfinite_patience=1",
                           networks=networks, steps=steps, evaluators={})).run()
