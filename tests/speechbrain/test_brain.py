"""The Brain front end: SpeechBrain's documented usage, accumulation, non-finite losses, options."""

from __future__ import annotations

import json

import pytest
import torch
from torch.optim import SGD
from torch.utils.data import TensorDataset

import baton as sb
from baton.errors import ConfigError, NonFiniteLossError


class SimpleBrain(sb.Brain):
    """SpeechBrain's docstring example, with only the import changed."""

    def compute_forward(self, batch, stage):
        return self.modules.model(batch[0] * self.hparams.scalar)

    def compute_objectives(self, predictions, batch, stage):
        return torch.nn.functional.l1_loss(predictions, batch[0])


def test_speechbrain_documented_example_runs_with_only_the_import_changed():
    model = torch.nn.Linear(in_features=10, out_features=10)
    before = model.weight.detach().clone()
    brain = SimpleBrain(
        {"model": model}, opt_class=lambda x: SGD(x, lr=0.1), hparams={"scalar": 5}, run_opts={"device": "cpu"}
    )
    brain.fit(range(1), ([torch.rand(10, 10), torch.rand(10, 10)],))
    assert not torch.equal(before, model.weight)
    assert brain.optimizer_step == 1
    assert isinstance(brain.modules, torch.nn.ModuleDict) and brain.modules.model is model
    assert brain.hparams.scalar == 5 and brain.device == torch.device("cpu")
    assert brain.history[0]["train"]["loss"] > 0


class Regression(sb.Brain):
    """MSE of a linear model; `nan_at` makes the loss NaN at those (epoch, batch) positions."""

    nan_at: set[tuple[int, int]] = set()

    def compute_forward(self, batch, stage):
        return self.modules.model(batch[0])

    def compute_objectives(self, predictions, batch, stage):
        loss = torch.nn.functional.mse_loss(predictions, batch[1])
        if stage == sb.Stage.TRAIN and (self.epoch, self.step) in self.nan_at:
            loss = loss * float("nan")
        return loss


def regression_data(items: int = 16) -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, generator=gen)
    return TensorDataset(x[:items], x[:items] @ torch.randn(4, 2, generator=gen))


def train_weights(run_opts: dict, batch_size: int, items: int = 16) -> torch.Tensor:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    brain = Regression({"model": model}, lambda p: SGD(p, lr=0.1), run_opts={"max_grad_norm": 0, **run_opts})
    brain.fit(range(1), regression_data(items), train_loader_kwargs={"batch_size": batch_size})
    return model.weight.detach().clone()


def test_accumulating_k_batches_equals_one_batch_k_times_larger():
    accumulated = train_weights({"grad_accumulation_factor": 4}, batch_size=2)
    large = train_weights({}, batch_size=8)
    torch.testing.assert_close(accumulated, large)
    assert not torch.allclose(accumulated, train_weights({}, batch_size=2))


def test_a_short_last_accumulation_group_is_stepped_or_dropped_as_asked():
    # 10 items, batches of 2, groups of 4 batches: one full group, then one batch left over.
    stepped = train_weights({"grad_accumulation_factor": 4}, batch_size=2, items=10)
    dropped = train_weights({"grad_accumulation_factor": 4, "accumulation_remainder": "drop"}, batch_size=2, items=10)
    one_group = train_weights({}, batch_size=8, items=8)
    torch.testing.assert_close(dropped, one_group)  # the left-over batch did nothing
    assert not torch.allclose(stepped, dropped)
    # Stepped: the last update is that one batch's own mean gradient (divided by 1, not by 4).
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    data = regression_data(10)
    optimizer = SGD(model.parameters(), lr=0.1)
    for chunk in (slice(0, 8), slice(8, 10)):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(data.tensors[0][chunk]), data.tensors[1][chunk]).backward()
        optimizer.step()
    torch.testing.assert_close(stepped, model.weight.detach())


def test_a_nan_loss_skips_its_update_and_is_counted():
    Regression.nan_at = {(1, 2)}
    try:
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 2)
        brain = Regression({"model": model}, lambda p: SGD(p, lr=0.1))
        brain.fit(range(1), regression_data(8), train_loader_kwargs={"batch_size": 2})
    finally:
        Regression.nan_at = set()
    assert torch.isfinite(model.weight).all()
    assert brain.optimizer_step == 3  # 4 batches, one skipped
    assert brain.history[0]["train"]["nonfinite_losses"] == 1


def test_nonfinite_patience_plus_one_in_a_row_stops_training_with_a_message():
    Regression.nan_at = {(1, 2), (1, 3), (1, 4)}
    try:
        brain = Regression({"model": torch.nn.Linear(4, 2)}, lambda p: SGD(p, lr=0.1), run_opts={"nonfinite_patience": 2})
        with pytest.raises(NonFiniteLossError, match=r"not finite for 3 batch\(es\) in a row .*nonfinite_patience=2"):
            brain.fit(range(1), regression_data(16), train_loader_kwargs={"batch_size": 2})
        assert brain.optimizer_step == 1  # only the first batch's update happened
        # Patience counts losses in a row: a finite one in between resets it.
        Regression.nan_at = {(1, 2), (1, 3), (1, 5), (1, 6)}
        brain = Regression({"model": torch.nn.Linear(4, 2)}, lambda p: SGD(p, lr=0.1), run_opts={"nonfinite_patience": 2})
        brain.fit(range(1), regression_data(16), train_loader_kwargs={"batch_size": 2})
        assert brain.history[0]["train"]["nonfinite_losses"] == 4
    finally:
        Regression.nan_at = set()


def test_valid_stage_and_hooks_run_in_speechbrain_order():
    calls = []

    class Hooked(Regression):
        def on_fit_start(self):
            calls.append("fit_start")
            super().on_fit_start()

        def on_stage_start(self, stage, epoch=None):
            calls.append(f"start {stage.value} {epoch}")

        def on_stage_end(self, stage, stage_loss, epoch=None):
            calls.append(f"end {stage.value} {epoch}")
            assert stage_loss is not None and stage_loss > 0

    brain = Hooked({"model": torch.nn.Linear(4, 2)}, lambda p: SGD(p, lr=0.1))
    brain.fit(sb.EpochCounter(2), regression_data(8), regression_data(4), train_loader_kwargs={"batch_size": 4})
    test_loss = brain.evaluate(regression_data(4), test_loader_kwargs={"batch_size": 2})
    assert calls == [
        "fit_start", "start train 1", "end train 1", "start valid 1", "end valid 1",
        "start train 2", "end train 2", "start valid 2", "end valid 2",
        "start evaluate None", "end evaluate None",
    ]
    assert test_loss == brain.history[-1]["test"]["loss"]


def test_run_options_come_from_run_opts_then_hparams_then_defaults():
    brain = Regression({"model": torch.nn.Linear(4, 2)}, hparams={"max_grad_norm": 1.5, "nonfinite_patience": 7},
                       run_opts={"nonfinite_patience": 2})
    assert brain.max_grad_norm == 1.5 and brain.nonfinite_patience == 2 and brain.grad_accumulation_factor == 1
    with pytest.raises(ConfigError, match="precision='fp8'; use fp32, fp16 or bf16"):
        Regression({"model": torch.nn.Linear(4, 2)}, run_opts={"precision": "fp8"})


def test_debug_mode_runs_a_few_batches_of_a_few_epochs():
    brain = Regression({"model": torch.nn.Linear(4, 2)}, lambda p: SGD(p, lr=0.1),
                       run_opts={"debug": True, "debug_batches": 2, "debug_epochs": 1})
    brain.fit(range(5), regression_data(16), regression_data(16), train_loader_kwargs={"batch_size": 2})
    assert len(brain.history) == 1 and brain.optimizer_step == 2


def test_parse_arguments_splits_run_options_from_yaml_overrides():
    hparams_file, run_opts, overrides = sb.parse_arguments(
        ["hparams.yaml", "--device", "cpu", "--precision", "bf16", "--grad_accumulation_factor", "2",
         "--noprogressbar", "--lr", "0.5", "--output_folder=results/x", "--seed", "3"]
    )
    assert hparams_file == "hparams.yaml"
    assert run_opts == {"device": "cpu", "precision": "bf16", "grad_accumulation_factor": 2, "noprogressbar": True, "seed": 3}
    assert overrides == "lr: 0.5\noutput_folder: results/x\nseed: 3"  # the hparams seed too
    with pytest.raises(ConfigError, match="--lr has no value"):
        sb.parse_arguments(["hparams.yaml", "--lr"])


def test_bf16_autocast_trains_on_cpu():
    brain = Regression({"model": torch.nn.Linear(4, 2)}, lambda p: SGD(p, lr=0.1), run_opts={"precision": "bf16"})
    brain.fit(range(1), regression_data(8), train_loader_kwargs={"batch_size": 4})
    assert brain.optimizer_step == 2 and torch.isfinite(brain.modules.model.weight).all()


def test_a_recipe_that_recovers_in_its_own_on_fit_start_resumes_where_it_stopped(tmp_path):
    class SelfRecovering(Regression):
        def on_fit_start(self):  # SpeechBrain recipes (G2P) do this instead of calling super()
            self.prepare()
            self.init_optimizers()
            self.checkpointer.recover_if_possible()

        def on_stage_end(self, stage, stage_loss, epoch=None):
            if stage == sb.Stage.TRAIN:
                self.checkpointer.save_and_keep_only(meta={"loss": stage_loss}, min_keys=["loss"])

    def brain(epochs: int):
        counter = sb.EpochCounter(epochs)
        model = torch.nn.Linear(4, 2)
        checkpointer = sb.Checkpointer(tmp_path / "save", {"model": model, "counter": counter})
        return SelfRecovering({"model": model}, lambda p: SGD(p, lr=0.1), checkpointer=checkpointer), counter

    first, counter = brain(2)
    first.fit(counter, regression_data(8), train_loader_kwargs={"batch_size": 4})
    again, counter = brain(3)
    again.fit(counter, regression_data(8), train_loader_kwargs={"batch_size": 4})
    assert [len(first.history), len(again.history)] == [2, 3]
    assert again.optimizer_step == 6  # epochs 1-2 were not trained again


def test_a_fit_stays_finished_after_evaluate_recovers_an_earlier_best_checkpoint(tmp_path):
    """SpeechBrain's evaluate(min_key=...) recovers every recoverable of the best checkpoint,
    the epoch counter too; the run must still count as finished (an XP is then done, not killed)."""

    class WorseEachEpoch(Regression):
        def on_stage_end(self, stage, stage_loss, epoch=None):
            if stage == sb.Stage.VALID:
                self.checkpointer.save_and_keep_only(meta={"err": float(epoch)}, min_keys=["err"])

    counter = sb.EpochCounter(3)
    model = torch.nn.Linear(4, 2)
    checkpointer = sb.Checkpointer(tmp_path, {"model": model, "counter": counter})
    brain = WorseEachEpoch({"model": model}, lambda p: SGD(p, lr=0.1), checkpointer=checkpointer)
    brain.fit(counter, regression_data(8), regression_data(4), train_loader_kwargs={"batch_size": 4})
    assert brain.finished
    brain.evaluate(regression_data(4), min_key="err")
    assert counter.current == 1  # the best checkpoint (epoch 1) was recovered, as SpeechBrain does
    assert brain.finished


def test_evaluate_with_a_key_no_checkpoint_has_is_one_line_naming_the_keys(tmp_path):
    class Saving(Regression):
        def on_stage_end(self, stage, stage_loss, epoch=None):
            if stage == sb.Stage.TRAIN:
                self.checkpointer.save_and_keep_only(meta={"loss": stage_loss}, min_keys=["loss"])

    model = torch.nn.Linear(4, 2)
    brain = Saving({"model": model}, lambda p: SGD(p, lr=0.1), checkpointer=sb.Checkpointer(tmp_path, {"model": model}))
    brain.fit(range(1), regression_data(8), train_loader_kwargs={"batch_size": 4})
    with pytest.raises(ConfigError, match=r"no checkpoint .* has 'err' in its meta \(they have: loss\)"):
        brain.evaluate(regression_data(4), min_key="err")
    # A save of the recipe's own after evaluate (outside the stage hooks) works.
    assert brain.checkpointer.save_checkpoint(name="latest") is not None


def test_run_options_are_speechbrains_type_of_run_opts():
    hparams_file, run_opts, overrides = sb.RunOptions.from_command_line_args(
        ["hparams.yaml", "--device", "cpu", "--grad_accumulation_factor", "2", "--lr", "0.1"])
    assert (hparams_file, overrides) == ("hparams.yaml", "lr: 0.1")
    assert run_opts["device"] == "cpu" and run_opts.grad_accumulation_factor == 2
    assert run_opts.overridden_args == {"device", "grad_accumulation_factor"}
    assert run_opts.nonfinite_patience == 3  # not given: its default, as an attribute only
    assert "nonfinite_patience" not in run_opts
    brain = Regression({"model": torch.nn.Linear(4, 2)}, lambda p: SGD(p, lr=0.1), run_opts=run_opts)
    assert brain.grad_accumulation_factor == 2
    with pytest.raises(ConfigError, match=r"unknown run option 'devise' \(did you mean 'device'\?\)"):
        sb.RunOptions({"devise": "cpu"})


def test_every_evaluation_is_kept_under_its_own_name(tmp_path):
    """Two test sets (test-clean, test-other): neither result overwrites the other."""
    brain = Regression({"model": torch.nn.Linear(4, 2)}, lambda p: SGD(p, lr=0.1), run_opts={"output_folder": str(tmp_path)})
    brain.fit(range(1), regression_data(8), train_loader_kwargs={"batch_size": 4})
    first = brain.evaluate(regression_data(4), test_loader_kwargs={"batch_size": 2})
    brain.evaluate(regression_data(6), test_loader_kwargs={"batch_size": 2})
    brain.evaluate(regression_data(4), test_loader_kwargs={"batch_size": 2}, name="test_other")
    assert {"test", "test_2", "test_other"} <= set(brain.history[-1])
    assert brain.history[-1]["test"]["loss"] == pytest.approx(first)
    lines = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert {"test", "test_2", "test_other"} <= set(lines[-1])
