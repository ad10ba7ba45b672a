"""The engine's second shape, used the way Brain and config-driven steps will use it: per-update
iteration with two optimizers, one EMA per module, best state per metric, early stopping,
evaluation on other test sets after `run()`, and `close()`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from baton.errors import ConfigError
from baton.optim import build_optimizer
from baton.solver.loop import UpdateBatches
from baton.solver.stage import Stage
from baton.tasks.example import ExampleSolver, RegressionNet
from tests.helpers import example_config

FAST = ["logging.tensorboard=false", "task.num_train=128", "task.num_valid=64", "optim.ema.use=false"]


class TwoNets(ExampleSolver):
    """Two models, each with its own optimizer, trained in sequence within every update: the
    second one's input is the first one's output, computed after the first one stepped."""

    def build_model(self) -> None:
        task = self.cfg.task
        self.model = RegressionNet(task.dim, task.hidden, 0.0)
        self.refiner = RegressionNet(task.dim, task.hidden, 0.0)
        self.stepper = self.make_stepper(build_optimizer(self.model, self.cfg.optim), None, self.model)
        self.refiner_stepper = self.make_stepper(
            build_optimizer(self.refiner, self.cfg.optim), None, self.refiner, name="refiner", max_norm=1.0
        )
        self.register_stateful("model", "refiner", "stepper", "refiner_stepper")
        self.register_best("model", "refiner")
        self.register_ema("model", "refiner")
        self.seen: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (update, weight seen, weight after)

    def train(self) -> dict[str, float]:
        self.run_updates(self.one_update)
        return self.stage_metrics.result()

    def one_update(self, update: UpdateBatches) -> None:
        for _, (x, y) in update.micro_batches(self.stepper):
            metrics = self.stepper.step(F.mse_loss(self.model(x), y))
        stepped = self.model.net[0].weight.detach().clone()
        for _, (x, y) in update.micro_batches(self.refiner_stepper):
            seen = self.model.net[0].weight.detach().clone()  # what the second forward uses
            with torch.no_grad():
                first = self.model(x)
            metrics.update(self.refiner_stepper.step(F.mse_loss(self.refiner(first), y)))
        self.seen.append((update.index, seen, stepped))
        self.stage_metrics.update({"loss": F.mse_loss(self.model(x), y), **metrics}, count=len(x))


def two_nets(folder: Path, *overrides: str) -> TwoNets:
    return TwoNets(example_config(folder, *FAST, *overrides))


def test_the_second_optimizer_sees_the_first_ones_update(tmp_path: Path) -> None:
    s = two_nets(tmp_path, "optim.epochs=1", "optim.grad_accumulation=2", "optim.updates_per_epoch=3")
    history = s.run()
    assert [index for index, _, _ in s.seen] == [0, 1, 2] and s.update_count == 3
    for _, seen, stepped in s.seen:
        assert torch.equal(seen, stepped)
    assert len({tuple(seen.flatten()[:4].tolist()) for _, seen, _ in s.seen}) == 3  # it moved
    # Each stepper reports under its own name, with its own clipping.
    assert {"lr", "refiner_lr", "refiner_grad_norm"} <= set(history[0]["train"])
    assert s.stepper.scaler is None and s.stepper.max_norm is None and s.refiner_stepper.max_norm == 1.0


def test_ema_of_two_modules_restored_by_value(tmp_path: Path) -> None:
    overrides = ["optim.epochs=2", "optim.ema.use=true", "optim.updates_per_epoch=3"]
    first = two_nets(tmp_path, *overrides)
    first.run()
    assert set(first.ema.averages) == {"model", "refiner"}
    resumed = two_nets(tmp_path, *overrides)
    assert resumed.restore()
    assert resumed.ema.num_updates == first.ema.num_updates == 6
    for name in ("model", "refiner"):
        live = first.stateful.get(name).state_dict()
        for key, value in first.ema.averages[name].items():
            assert torch.equal(resumed.ema.averages[name][key], value)
        assert not torch.equal(first.ema.averages[name]["net.0.weight"], live["net.0.weight"])


def test_a_module_cannot_be_averaged_twice(tmp_path: Path) -> None:
    s = two_nets(tmp_path, "optim.ema.use=true")
    with pytest.raises(ValueError, match="'model' is averaged already"):
        s.register_ema("model")


def test_stopping_early_inside_an_update_loop_loses_no_update(tmp_path: Path) -> None:
    """A caller that ends the stage after an update (`stop_when`) still gets it counted (and
    its EMA step)."""
    s = ExampleSolver(example_config(tmp_path, *FAST, "optim.epochs=1", "optim.ema.use=true"))
    s.prepare()
    s.stage = Stage.TRAIN

    def one_update(update: UpdateBatches) -> None:
        for _, (x, y) in update.micro_batches(s.stepper):
            s.stepper.step(F.mse_loss(s.model(x), y))

    s.run_updates(one_update, stop_when=lambda: s.update_count == 2)
    assert s.update_count == 2 and s.ema.num_updates == 2 and s.loop_state.train_done == 0
    assert s.train_stream.state_dict() == {"epoch": 1, "position": 0, "world_size": 1}  # next epoch: a new pass


class EarlyStopping(ExampleSolver):
    def build_model(self) -> None:
        super().build_model()
        self.track_best("lr", direction="max", stage="train")  # any metric of any stage
        self.calls: list[tuple[str, Any]] = []

    def before_stage(self, stage: Stage) -> None:
        self.calls.append(("before", stage))

    def after_stage(self, stage: Stage, metrics: dict[str, float]) -> None:
        self.calls.append(("after", stage))

    def should_stop(self) -> bool:
        return len(self.history) == 2


def test_should_stop_ends_training_and_a_rerun_does_not_continue(tmp_path: Path) -> None:
    s = EarlyStopping(example_config(tmp_path, *FAST, "optim.epochs=5"))
    assert len(s.run()) == 2 and s.finished and s.loop_state.stopped_early
    assert s.calls[:2] == [("before", Stage.TRAIN), ("after", Stage.TRAIN)]
    again = EarlyStopping(example_config(tmp_path, *FAST, "optim.epochs=5"))
    assert len(again.run()) == 2 and again.calls == []


def test_best_state_per_metric_and_evaluation_on_another_set(tmp_path: Path) -> None:
    with EarlyStopping(example_config(tmp_path, *FAST, "optim.epochs=5", "best_metric.direction=max")) as s:
        s.run()
        # valid loss, max: epoch 1's state; train lr (rising in warmup), max: epoch 2's.
        assert s.best.value() == s.history[0]["valid"]["loss"]
        assert s.best.value("lr") == s.history[1]["train"]["lr"]
        assert s.best.state() is not s.best.state("lr")
        other = s.dataloaders["valid"]
        by_valid = s.evaluate_on("test_other", other)
        by_train = s.evaluate_on("test_other_by_train", other, best="lr")
        assert by_valid != by_train and s.dataloaders["evaluate"] is not other
        with pytest.raises(ConfigError, match="no best state is tracked for metric 'wer'"):
            s.evaluate_on("x", other, best="wer")
    lines = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert lines[-1]["test_other"] == pytest.approx(by_valid) and "test_other_by_train" in lines[-1]
    log = (tmp_path / "solver.log").read_text()
    assert "Test_other | epoch 2" in log
    # After close(), the next solver's lines do not reach this XP's log.
    ExampleSolver(example_config(tmp_path / "next", *FAST, "optim.epochs=1")).run()
    assert (tmp_path / "solver.log").read_text() == log
    # A later run of the finished XP keeps the extra evaluations (they were checkpointed).
    EarlyStopping(example_config(tmp_path, *FAST, "optim.epochs=5", "best_metric.direction=max")).run()
    assert "test_other" in json.loads((tmp_path / "history.jsonl").read_text().splitlines()[-1])


def test_construction_through_from_config_and_late_optimizers(tmp_path: Path) -> None:
    """A front end may create its optimizers after construction, when data arrives: the engine
    prepares (compiles, wraps) what is registered when training starts."""

    class Late(ExampleSolver):
        def build_model(self) -> None:
            self.model = RegressionNet(16, 8, 0.0)
            self.register_stateful("model")

        def before_stage(self, stage: Stage) -> None:
            if not hasattr(self, "stepper"):
                self.stepper = self.make_stepper(torch.optim.SGD(self.model.parameters(), lr=0.1), None, self.model)
                self.register_stateful("stepper")

    s = Late.from_config(example_config(tmp_path, *FAST, "optim.epochs=1", "task.hidden=8"))
    assert isinstance(s, Late) and len(s.run()) == 1 and s.update_count == 4


def test_unknown_extra_best_metric_is_named(tmp_path: Path) -> None:
    class Typo(ExampleSolver):
        def build_model(self) -> None:
            super().build_model()
            self.track_best("acc", direction="max")

    with pytest.raises(ConfigError, match=r"track_best\('acc'\) is not a metric of stage 'valid'"):
        Typo(example_config(tmp_path, *FAST, "optim.epochs=1")).run()



def test_a_signal_from_an_earlier_run_does_not_stop_the_next(tmp_path: Path) -> None:
    """A notebook: run() stopped by Ctrl-C, then run() again trains, and a new Ctrl-C counts as
    the first."""
    import signal

    s = ExampleSolver(example_config(tmp_path, *FAST, "optim.epochs=1"))
    s.cadence.signal.received = signal.SIGINT  # what the earlier, interrupted run() left
    assert len(s.run()) == 1 and s.finished


def test_a_signal_after_the_last_commit_leaves_the_xp_done(tmp_path: Path) -> None:
    import signal

    class SignalledAtTheEnd(ExampleSolver):
        def after_stage(self, stage: Stage, metrics: dict[str, float]) -> None:
            if stage is Stage.GENERATE and self.epoch == 2:
                self.cadence.signal.received = signal.SIGTERM  # the epoch commits next

    s = SignalledAtTheEnd(example_config(tmp_path, *FAST, "optim.epochs=2"))
    assert len(s.run()) == 2 and s.finished  # no Interrupted: nothing was left to resume


def test_best_states_come_from_valid_or_train(tmp_path: Path) -> None:
    s = ExampleSolver(example_config(tmp_path, *FAST, "optim.epochs=1"))
    with pytest.raises(ConfigError, match=r"track_best\('mse', stage='evaluate'\): evaluate runs with the best state"):
        s.track_best("mse", stage="evaluate")
