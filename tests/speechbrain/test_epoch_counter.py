"""Epoch counters resume where training left off, and the stopper stops when patience runs out."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.speechbrain.checkpointer import Checkpointer
from baton.speechbrain.epoch_counter import EpochCounter, EpochCounterWithStopper


def test_the_counter_runs_epochs_one_to_limit() -> None:
    counter = EpochCounter(3)
    assert iter(counter) is counter and list(counter) == [1, 2, 3] and counter.current == 3
    assert list(counter) == []  # done: a second loop runs nothing


@pytest.mark.parametrize(("end_of_epoch", "resumes_at"), [(True, 3), (False, 2)])
def test_a_resumed_counter_goes_on_after_the_last_finished_epoch(
    tmp_path: Path, end_of_epoch: bool, resumes_at: int
) -> None:
    counter = EpochCounter(5)
    checkpointer = Checkpointer(tmp_path, {"epoch": counter})
    for epoch in counter:
        checkpointer.save_and_keep_only(end_of_epoch=end_of_epoch)
        if epoch == 2:
            break  # killed during (or right after) epoch 2

    resumed = EpochCounter(5)
    Checkpointer(tmp_path, {"epoch": resumed}).recover_if_possible()
    assert next(resumed) == resumes_at  # an interrupted epoch is run again


def test_the_stopper_stops_once_patience_is_exhausted_after_warmup() -> None:
    stopper = EpochCounterWithStopper(limit=10, limit_to_stop=5, limit_warmup=2, direction="min")
    epochs = []
    for epoch in stopper:
        epochs.append(epoch)
        stopper.update_metric(0.0)  # never improves after epoch 3, the first one tracked
    assert epochs == [1, 2, 3, 4, 5, 6, 7, 8] and stopper.should_stop and stopper.best_limit == 3


def test_an_improving_metric_keeps_the_stopper_going() -> None:
    stopper = EpochCounterWithStopper(limit=6, limit_to_stop=1, limit_warmup=0, direction="max")
    for epoch in stopper:
        stopper.update_metric(float(epoch))  # accuracy that keeps rising
    assert stopper.current == 6 and not stopper.should_stop and stopper.best_score == 6.0


def test_the_stopper_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="'min' or 'max'"):
        EpochCounterWithStopper(10, 2, 0, "lowest")
    with pytest.raises(ValueError, match="limit_to_stop"):
        EpochCounterWithStopper(10, -1, 0, "min")


@pytest.mark.parametrize(("end_of_epoch", "current"), [(True, 4), (False, 3)])
def test_a_resumed_stopper_keeps_its_best_epoch_and_decision(
    tmp_path: Path, end_of_epoch: bool, current: int
) -> None:
    stopper = EpochCounterWithStopper(limit=10, limit_to_stop=2, limit_warmup=0, direction="min")
    checkpointer = Checkpointer(tmp_path, {"epoch": stopper})
    for loss in [0.5, 0.3, 0.4, 0.4]:
        next(stopper)
        stopper.update_metric(loss)
    assert stopper.should_stop
    checkpointer.save_checkpoint(end_of_epoch=end_of_epoch)

    resumed = EpochCounterWithStopper(limit=10, limit_to_stop=2, limit_warmup=0, direction="min")
    Checkpointer(tmp_path, {"epoch": resumed}).recover_if_possible()
    assert (resumed.current, resumed.best_limit, resumed.best_score) == (current, 2, 0.3)
    assert resumed.should_stop and list(resumed) == []


def test_a_stopper_reads_a_plain_counter_file(tmp_path: Path) -> None:
    counter = EpochCounter(10)
    next(counter)
    Checkpointer(tmp_path, {"epoch": counter}).save_checkpoint()
    stopper = EpochCounterWithStopper(10, 2, 0, "min")
    Checkpointer(tmp_path, {"epoch": stopper}).recover_if_possible()
    assert stopper.current == 1 and stopper.best_score == float("inf")


def test_counters_are_built_from_hyperpyyaml(tmp_path: Path) -> None:
    hyperpyyaml = pytest.importorskip("hyperpyyaml")
    hparams = hyperpyyaml.load_hyperpyyaml(
        f"""
epoch_counter: !new:baton.speechbrain.epoch_counter.EpochCounterWithStopper
    limit: 4
    limit_to_stop: 2
    limit_warmup: 1
    direction: min
checkpointer: !new:baton.Checkpointer
    checkpoints_dir: {tmp_path}
    recoverables:
        counter: !ref <epoch_counter>
"""
    )
    assert list(hparams["epoch_counter"]) == [1, 2, 3, 4]
    assert hparams["checkpointer"].recoverables["counter"] is hparams["epoch_counter"]
