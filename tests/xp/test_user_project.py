"""A user's own project, outside the baton package: its solver, YAML, team file and grid, driven
through every `baton` command as a user would type them."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
import torch

from baton.xp.folder import all_xps
from tests.xp.conftest import baton_cli

SOLVERS = '''
"""A linear regression: the smallest StandardSolver a project could write."""
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from baton.optim import build_optimizer
from baton.solver import StandardSolver, register_solver


@register_solver("linear")
class LinearSolver(StandardSolver):
    def build_model(self):
        self.model = nn.Linear(self.cfg.task.dim, 1)
        self.stepper = self.make_stepper(build_optimizer(self.model, self.cfg.optim), None, self.model)
        self.register_stateful("model", "stepper")
        self.register_best("model")

    def build_dataloaders(self):
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(128, self.cfg.task.dim, generator=gen)
        y = x.sum(dim=1, keepdim=True)
        for split in ("train", "valid"):
            self.dataloaders[split] = DataLoader(TensorDataset(x, y), batch_size=32)

    def run_step(self, idx, batch, metrics):
        x, y = batch
        loss = F.mse_loss(self.model(x), y)
        if self.is_training:
            metrics.update(self.stepper.step(loss))
        metrics["loss"] = loss
        return metrics

    def evaluate(self):
        x, y = self.dataloaders["valid"].dataset.tensors
        return {"mse": F.mse_loss(self.model(x), y).item()}

    def generate(self):
        return {}
'''

SOLVER_YAML = """\
# @package _global_
defaults:
  - /solver/default
  - _self_
solver: linear
imports: [myproj.solvers]
task:
  dim: 4
optim:
  epochs: 2
  lr: 0.05
"""

TEAM_YAML = """\
clusters:
  local:
    xp_root: {root}
"""

GRID = """\
from baton.xp.explore import explorer


@explorer(metrics=["valid.loss", "evaluate.mse"])
def explore(launcher):
    launcher.bind_(solver="linear")
    for lr in [0.01, 0.1]:
        launcher(optim={"lr": lr})
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "my_project"
    files = {
        "myproj/__init__.py": "",
        "myproj/solvers.py": SOLVERS,
        "myproj/grids/__init__.py": "",
        "myproj/grids/lr_sweep.py": GRID,
        "conf/solver/linear.yaml": SOLVER_YAML,
        "conf/teams/lab.yaml": TEAM_YAML.format(root=tmp_path / "lab_xps"),
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


@pytest.mark.slow
def test_a_user_project_through_every_command(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # The project's team file decides where XPs go, so BATON_XP_DIR stays unset.
    monkeypatch.delenv("BATON_XP_DIR")
    env = {"BATON_CONFIG_PATH": str(project / "conf"), "BATON_TEAM": "lab", "BATON_GRID_PACKAGE": "myproj.grids"}
    xp_root = tmp_path / "lab_xps"

    def baton(*args: str):
        result = baton_cli(*args, cwd=project, env=env)
        assert result.returncode == 0, f"baton {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    out = baton("run", "solver=linear")
    (xp,) = all_xps(xp_root)
    assert f"XP {xp.sig} done" in out
    assert len(xp.history()) == 2
    assert json.loads((xp.path / ".argv.json").read_text()) == ["solver=linear"]

    assert "optim.lr=0.1" in baton("run", "-f", xp.sig, "optim.lr=0.1", "--dry_run")
    assert xp.sig in baton("ls") and "done" in baton("ls")
    info = baton("info", "-f", xp.sig, "-m")
    assert "valid.loss" in info and re.search(r"checkpoint\s+epoch 2", info)

    grid = baton("grid", "lr_sweep", "-j", "2")
    assert grid.count("done") >= 2
    assert len(all_xps(xp_root)) == 3

    baton("export", xp.sig, "-o", str(tmp_path / "linear.pt"))
    weights = torch.load(tmp_path / "linear.pt", weights_only=True)
    plain = torch.nn.Linear(4, 1)
    plain.load_state_dict(weights)

    failure = baton_cli("run", "solver=linear", "task.dimm=3", cwd=project, env=env)
    assert failure.returncode == 2
    assert "did you mean 'task.dim'" in failure.stderr
