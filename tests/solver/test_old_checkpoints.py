"""Checkpoints written by an older baton (format 2) resume with today's engine to the same weights.

The files under tests/assets/format2/ were written by baton at commit b6d07ee, before the
engine's third shape: the example task stopped by SIGTERM after update 8 of 12 (mid-epoch 2),
and a Brain stopped after update 8 of epoch 1, each beside the final weights of the same run
never stopped. Resuming them now must end with those weights exactly: the checkpoint layout is
read (or upgraded) and the loop continues as the old one would have.

"The same" is to the last bits of float32, not bit for bit: the reference weights were computed
on another CPU, whose matrix kernels round in another order (on this repository's CI machine
they differ by about 1e-9). Anything the restore could miss (optimizer moments, the data
position, an RNG stream, the EMA) moves these weights by 1e-4 or more; bit-exact resume on one
machine is proven by tests/solver/test_resume.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

import baton as sb
from baton.tasks.example import ExampleSolver
from tests.helpers import example_config

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "format2"
EXAMPLE = ["logging.tensorboard=false", "task.num_train=96", "task.num_valid=32", "task.hidden=8",
           "optim.epochs=2", "optim.updates_per_epoch=6", "optim.ema.use=true", "dataset.batch_size=8"]


def assert_same(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, rtol=1e-6, atol=1e-7, msg=key)


def test_a_format_2_mid_epoch_checkpoint_resumes_to_the_same_weights(tmp_path: Path) -> None:
    folder = tmp_path / "xp"
    shutil.copytree(ASSETS / "example_mid_epoch", folder)
    expected = torch.load(ASSETS / "example_final.th", weights_only=True)
    with ExampleSolver(example_config(folder, *EXAMPLE)) as solver:
        history = solver.run()
        assert len(history) == 2
        assert_same(solver.model.state_dict(), expected["model"])
        assert_same(solver.ema.averages["model"], expected["ema"])
        assert_same(solver.best_state["model"], expected["best"])


class Regression(sb.Brain):
    def compute_forward(self, batch, stage):
        return self.modules.model(batch[0])

    def compute_objectives(self, predictions, batch, stage):
        return torch.nn.functional.mse_loss(predictions, batch[1])

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.VALID:
            self.checkpointer.save_and_keep_only(meta={"loss": stage_loss}, min_keys=["loss"])


def regression_data() -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(48, 4, generator=gen)
    return TensorDataset(x, x @ torch.randn(4, 2, generator=gen))


def test_a_format_2_brain_checkpoint_resumes_to_the_same_weights(tmp_path: Path) -> None:
    folder = tmp_path / "save"
    shutil.copytree(ASSETS / "brain_mid_epoch", folder)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    counter = sb.EpochCounter(3)
    checkpointer = sb.Checkpointer(folder, {"model": model, "counter": counter})
    brain = Regression({"model": model}, lambda p: torch.optim.Adam(p, lr=0.01), checkpointer=checkpointer)
    brain.fit(counter, regression_data(), regression_data(), train_loader_kwargs={"batch_size": 4, "shuffle": True})
    assert counter.current == 3 and brain.optimizer_step == 36
    assert_same(model.state_dict(), torch.load(ASSETS / "brain_final.th", weights_only=True))
