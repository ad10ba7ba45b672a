"""AudioCraft's solver template works as written: stages named by strings
(`common_train_valid('train')`), the best metric named in code (a `best_metric()` method or a
`best_metric_name` property), and a plain optimizer registered as `register_stateful('model',
'optimizer')`."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from baton.solver import Stage, StandardSolver
from baton.tasks.example import teacher_dataset
from tests.helpers import example_config

CONFIG = ["logging.tensorboard=false", "optim.epochs=3", "optim.ema.use=false",
          "best_metric.name=not_a_metric"]  # the code's choice must win over this key


class MyNewSolver(StandardSolver):
    def build_model(self) -> None:
        self.model = nn.Linear(16, 16)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-2)
        self.register_stateful("model", "optimizer")
        self.register_best("model")
        self.seen = {"train": 0, "valid": 0}

    def build_dataloaders(self) -> None:
        self.dataloaders["train"] = DataLoader(teacher_dataset(96, 16, 0, 0, 0.0), batch_size=16)
        self.dataloaders["valid"] = DataLoader(teacher_dataset(32, 16, 0, 1, 0.0), batch_size=16)

    def best_metric(self) -> str:
        return "loss"

    def run_step(self, idx: int, batch: Any, metrics: dict) -> dict:
        x, y = batch
        loss = F.mse_loss(self.model(x), y)
        self.seen["train" if self.is_training else "valid"] += len(x)
        if self.is_training:
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad()
        metrics["loss"] = loss
        return metrics

    def train(self) -> dict:
        return self.common_train_valid("train")

    def valid(self) -> dict:
        return self.common_train_valid("valid")

    def evaluate(self) -> dict:
        return {}

    def generate(self) -> dict:
        return {}


def test_the_template_trains_on_the_train_loader_and_keeps_the_best_by_its_metric(tmp_path) -> None:  # type: ignore[no-untyped-def]
    solver = MyNewSolver(example_config(tmp_path, *CONFIG))
    history = solver.run()
    assert solver.seen == {"train": 3 * 96, "valid": 3 * 32}
    assert history[-1]["train"]["loss"] < history[0]["train"]["loss"]
    assert solver.best.primary == "loss"
    assert solver.best_value == min(epoch["valid"]["loss"] for epoch in history)
    assert "model" in solver.best_state


def test_stages_by_name() -> None:
    assert Stage.of("train") is Stage.TRAIN and Stage.of("VALID") is Stage.VALID
    assert Stage.of("test") is Stage.EVALUATE and Stage.of(Stage.GENERATE) is Stage.GENERATE
    with pytest.raises(ValueError, match="unknown stage 'trian'"):
        Stage.of("trian")


def test_no_best_state_when_the_code_says_none(tmp_path) -> None:  # type: ignore[no-untyped-def]
    class NoBest(MyNewSolver):
        @property
        def best_metric_name(self) -> str | None:
            return None

    solver = NoBest(example_config(tmp_path, *CONFIG))
    solver.run()
    assert solver.best_state == {} and solver.best_value is None
