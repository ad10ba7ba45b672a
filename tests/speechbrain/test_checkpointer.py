"""The SpeechBrain-style Checkpointer: save, find, recover and prune CKPT+... folders, safely."""

from __future__ import annotations

import logging
import os
import pathlib
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from baton.errors import CheckpointError, UnsafeCheckpointError
from baton.speechbrain import (
    Checkpoint,
    Checkpointer,
    average_checkpoints,
    ckpt_recency,
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from tests.helpers import mode, umask


def training_objects() -> tuple[torch.nn.Linear, torch.optim.SGD, torch.optim.lr_scheduler.StepLR]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    return model, optimizer, scheduler


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    optimizer.zero_grad()
    model(torch.ones(4, 3)).pow(2).sum().backward()
    optimizer.step()


def visible(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_save_then_recover_restores_model_optimizer_and_scheduler(tmp_path: Path) -> None:
    model, optimizer, scheduler = training_objects()
    checkpointer = Checkpointer(tmp_path / "save", {"model": model, "optimizer": optimizer, "scheduler": scheduler})
    assert checkpointer.recover_if_possible() is None  # nothing yet: start from scratch
    train_step(model, optimizer)
    scheduler.step()
    with umask(0o022):
        saved = checkpointer.save_checkpoint(meta={"loss": 0.5})
    assert saved is not None
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    # On disk: SpeechBrain's layout, readable by anyone, with the user's and the default meta.
    assert re.fullmatch(r"CKPT\+\d{4}-\d\d-\d\d\+\d\d-\d\d-\d\d\+00", saved.path.name)
    assert visible(saved.path) == ["CKPT.yaml", "model.ckpt", "optimizer.ckpt", "scheduler.ckpt"]
    meta = yaml.safe_load((saved.path / "CKPT.yaml").read_text())
    assert meta["loss"] == 0.5 and meta["end-of-epoch"] is True and isinstance(meta["unixtime"], float)
    assert mode(saved.path / "model.ckpt") == 0o644 and mode(saved.path) == 0o755
    assert visible(tmp_path / "save") == [saved.path.name]  # no temporary left

    # A fresh process: new objects, same names.
    model2, optimizer2, scheduler2 = training_objects()
    torch.nn.init.zeros_(model2.weight)
    recoverer = Checkpointer(tmp_path / "save", {"model": model2, "optimizer": optimizer2, "scheduler": scheduler2})
    recovered = recoverer.recover_if_possible()
    assert recovered == saved and recovered.paramfiles["model"] == saved.path / "model.ckpt"
    assert all(torch.equal(model2.state_dict()[k], v) for k, v in expected.items())
    assert scheduler2.last_epoch == 1 and optimizer2.param_groups[0]["lr"] == pytest.approx(0.05)
    momentum = optimizer2.state[optimizer2.param_groups[0]["params"][0]]["momentum_buffer"]
    assert torch.equal(momentum, optimizer.state[optimizer.param_groups[0]["params"][0]]["momentum_buffer"])


def test_find_by_recency_min_key_max_key_or_importance(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path, {"model": torch.nn.Linear(1, 1)})
    losses = [0.7, 0.3, 0.5]
    saved = [checkpointer.save_checkpoint(meta={"loss": loss, "acc": 1 - loss}) for loss in losses]
    unkeyed = checkpointer.save_checkpoint()  # no metrics: never picked by a meta key
    assert len(checkpointer.list_checkpoints()) == 4

    assert checkpointer.find_checkpoint() == unkeyed
    assert checkpointer.find_checkpoint(min_key="loss") == saved[1]
    assert checkpointer.find_checkpoint(max_key="acc") == saved[1]
    assert checkpointer.find_checkpoint(importance_key=lambda c: -c.meta.get("loss", 1.0)) == saved[1]
    assert checkpointer.find_checkpoints(min_key="loss") == [saved[1], saved[2], saved[0]]
    assert checkpointer.find_checkpoints(max_num_checkpoints=2) == [unkeyed, saved[2]]
    assert checkpointer.find_checkpoint(min_key="loss", ckpt_predicate=lambda c: c.meta["loss"] > 0.4) == saved[2]
    assert checkpointer.find_checkpoint(min_key="wer") is None
    with pytest.raises(ValueError, match="at most one"):
        checkpointer.find_checkpoint(min_key="loss", max_key="acc")


def test_recency_ties_go_to_the_later_folder(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path, {"model": torch.nn.Linear(1, 1)})
    first = checkpointer.save_checkpoint(meta={"unixtime": 100.0}, name="a")
    second = checkpointer.save_checkpoint(meta={"unixtime": 100.0}, name="b")
    assert first is not None and second is not None and ckpt_recency(first) == ckpt_recency(second)
    assert checkpointer.find_checkpoints() == [second, first]


def test_save_and_keep_only_keeps_the_best_by_a_min_key_and_the_most_recent(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path, {"model": torch.nn.Linear(1, 1)})
    for loss in [0.9, 0.2, 0.6, 0.4]:
        checkpointer.save_and_keep_only(meta={"loss": loss}, min_keys=["loss"])
    kept = sorted(c.meta["loss"] for c in checkpointer.list_checkpoints())
    assert kept == [0.2, 0.4]  # the best, and the newest

    # keep_recent=False: a new checkpoint that is worse is ranked out by its own call.
    checkpointer.save_and_keep_only(meta={"loss": 0.8}, min_keys=["loss"], keep_recent=False)
    assert [c.meta["loss"] for c in checkpointer.list_checkpoints()] == [0.2]


def test_save_and_keep_only_does_not_grow_its_default_lists(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path, {"model": torch.nn.Linear(1, 1)})
    for _ in range(3):
        checkpointer.save_and_keep_only(num_to_keep=2)
    assert len(checkpointer.list_checkpoints()) == 2
    assert Checkpointer.save_and_keep_only.__defaults__ is not None
    assert all(not isinstance(d, list) for d in Checkpointer.save_and_keep_only.__defaults__)


def test_intra_epoch_checkpoints_are_pruned_apart_from_end_of_epoch_ones(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path, {"model": torch.nn.Linear(1, 1)})
    checkpointer.save_and_keep_only(meta={"loss": 0.5}, min_keys=["loss"])
    (epoch_ckpt,) = checkpointer.list_checkpoints()
    intra = lambda c: "flag" in c.meta  # noqa: E731
    for _ in range(3):
        checkpointer.save_and_keep_only(meta={"flag": True}, end_of_epoch=False, ckpt_predicate=intra)
    found = checkpointer.list_checkpoints()
    assert len(found) == 2 and epoch_ckpt in found  # the end-of-epoch one, and the newest intra-epoch one
    latest = checkpointer.find_checkpoint()
    assert latest is not None and latest.meta["flag"] is True and latest.meta["end-of-epoch"] is False
    assert checkpointer.find_checkpoint(ckpt_predicate=lambda c: not intra(c)) == epoch_ckpt


def test_delete_checkpoints_keeps_the_union_of_each_criterion(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path, {"model": torch.nn.Linear(1, 1)})
    for loss, acc in [(0.1, 0.5), (0.5, 0.9), (0.3, 0.1), (0.9, 0.2)]:
        checkpointer.save_checkpoint(meta={"loss": loss, "acc": acc})
    checkpointer.delete_checkpoints(num_to_keep=1, min_keys=["loss"], max_keys=["acc"], importance_keys=[])
    assert sorted(c.meta["loss"] for c in checkpointer.list_checkpoints()) == [0.1, 0.5]
    with pytest.raises(ValueError, match="num_to_keep"):
        checkpointer.delete_checkpoints(num_to_keep=-1)


def test_a_missing_recoverable_is_an_error_unless_optional_or_partial_loads_are_allowed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = torch.nn.Linear(2, 2)
    Checkpointer(tmp_path, {"model": model}).save_checkpoint()
    scaler = torch.amp.GradScaler("cpu")

    strict = Checkpointer(tmp_path, {"model": torch.nn.Linear(2, 2), "scaler": scaler})
    with pytest.raises(CheckpointError) as missing:
        strict.recover_if_possible()
    message = str(missing.value)
    assert "\n" not in message and "'scaler'" in message and "CKPT+" in message

    optional = Checkpointer(tmp_path)
    optional.add_recoverable("model", torch.nn.Linear(2, 2))
    optional.add_recoverable("scaler", scaler, optional_load=True)
    with caplog.at_level(logging.WARNING, logger="baton.checkpointer"):
        assert optional.recover_if_possible() is not None
    assert "no 'scaler'" in caplog.text
    assert torch.equal(optional.recoverables["model"].weight, model.weight)

    partial = Checkpointer(tmp_path, {"model": torch.nn.Linear(2, 2), "scaler": scaler}, allow_partial_load=True)
    assert partial.recover_if_possible() is not None


def test_a_module_that_does_not_fit_is_one_line_unless_partial_loads_are_allowed(tmp_path: Path) -> None:
    Checkpointer(tmp_path, {"model": torch.nn.Linear(2, 2)}).save_checkpoint()
    bigger = torch.nn.Sequential()
    bigger.add_module("weight_holder", torch.nn.Linear(2, 2))
    with pytest.raises(CheckpointError) as misfit:
        Checkpointer(tmp_path, {"model": bigger}).recover_if_possible()
    assert "\n" not in str(misfit.value) and "allow_partial_load" in str(misfit.value)
    Checkpointer(tmp_path, {"model": bigger}, allow_partial_load=True).recover_if_possible()  # logs the mismatch


def test_wrapped_modules_save_plain_keys(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    saved = Checkpointer(tmp_path, {"model": torch.nn.DataParallel(model)}).save_checkpoint()
    assert saved is not None
    assert set(torch.load(saved.paramfiles["model"], weights_only=True)) == {"weight", "bias"}
    plain = torch.nn.Linear(2, 2)
    Checkpointer(tmp_path, {"model": plain}).recover_if_possible()
    assert torch.equal(plain.weight, model.weight)


@register_checkpoint_hooks
class Counter:
    """A recoverable of the user's own, saved as text."""

    def __init__(self) -> None:
        self.count = 0
        self.loaded_at_end_of_epoch: bool | None = None

    @mark_as_saver
    def save(self, path: Path) -> None:
        path.write_text(str(self.count))

    @mark_as_loader
    def load(self, path: Path, end_of_epoch: bool) -> None:
        self.count = int(path.read_text())
        self.loaded_at_end_of_epoch = end_of_epoch


class DoubleCounter(Counter):
    """A subclass overriding the saver is saved with its override."""

    def save(self, path: Path) -> None:
        path.write_text(str(2 * self.count))


@register_checkpoint_hooks
class OldStyle:
    """SpeechBrain's older loader signature, with a device argument."""

    def __init__(self) -> None:
        self.value = ""

    @mark_as_saver
    def _save(self, path: Path) -> None:
        path.write_text("saved")

    @mark_as_loader
    def _load(self, path: Path, end_of_epoch: bool, device: Any) -> None:
        self.value = f"{path.read_text()} {end_of_epoch} {device}"


def test_classes_register_their_own_hooks(tmp_path: Path) -> None:
    counter, double, old = Counter(), DoubleCounter(), OldStyle()
    counter.count = double.count = 7
    checkpointer = Checkpointer(tmp_path, {"counter": counter, "double": double, "old": old})
    saved = checkpointer.save_checkpoint(end_of_epoch=False)
    assert saved is not None and saved.paramfiles["double"].read_text() == "14"

    fresh = Counter()
    other_old = OldStyle()
    Checkpointer(tmp_path, {"counter": fresh, "old": other_old}, allow_partial_load=True).recover_if_possible()
    assert fresh.count == 7 and fresh.loaded_at_end_of_epoch is False
    assert other_old.value == "saved False None"


def test_marking_a_method_with_the_wrong_signature_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"\(self, path\)"):
        mark_as_saver(lambda self: None)
    with pytest.raises(TypeError, match=r"\(self, path, end_of_epoch\)"):
        mark_as_loader(lambda self, path: None)


def test_custom_hooks_per_recoverable(tmp_path: Path) -> None:
    settings = {"lr": 0.1}

    def save(obj: dict[str, float], path: Path) -> None:
        path.write_text(yaml.safe_dump(obj))

    def load(obj: dict[str, float], path: Path, end_of_epoch: bool) -> None:
        obj.update(yaml.safe_load(path.read_text()))

    Checkpointer(tmp_path, {"settings": settings}, custom_save_hooks={"settings": save}).save_checkpoint()
    restored: dict[str, float] = {}
    recoverer = Checkpointer(tmp_path)
    recoverer.add_recoverable("settings", restored, custom_load_hook=load)
    recoverer.recover_if_possible()
    assert restored == {"lr": 0.1}


def test_objects_without_hooks_and_non_mappings_are_one_line_type_errors(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="mapping") as not_mapping:
        Checkpointer(tmp_path, [torch.nn.Linear(1, 1)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'settings'") as no_hook:
        Checkpointer(tmp_path, {"settings": {"lr": 0.1}}).save_checkpoint()
    assert "\n" not in str(not_mapping.value) + str(no_hook.value)
    assert not tmp_path.joinpath("CKPT.yaml").exists() and Checkpointer(tmp_path).list_checkpoints() == []


class TouchOnLoad:
    """Unpickling this creates `marker`: a stand-in for a malicious payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_a_crafted_pickle_in_a_parameter_file_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    model = torch.nn.Linear(1, 1)
    saved = Checkpointer(tmp_path / "ckpts", {"model": model}).save_checkpoint()
    assert saved is not None
    marker = tmp_path / "pwned"
    torch.save({"weight": TouchOnLoad(marker)}, saved.paramfiles["model"])
    with pytest.raises(UnsafeCheckpointError) as refused:
        Checkpointer(tmp_path / "ckpts", {"model": model}).recover_if_possible()
    message = str(refused.value)
    assert "\n" not in message and "model.ckpt" in message and "trusted=True" in message
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):
        average_checkpoints([saved], "model")
    assert not marker.exists()


def test_a_save_that_fails_midway_leaves_no_checkpoint_and_the_previous_one_intact(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    checkpointer = Checkpointer(tmp_path, {"model": model})
    previous = checkpointer.save_checkpoint(meta={"loss": 1.0})
    assert previous is not None

    def crash(obj: Any, path: Path) -> None:
        path.write_text("half")
        raise KeyboardInterrupt  # a Ctrl-C in the middle of the save

    checkpointer.add_recoverable("state", {}, custom_save_hook=crash)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save_checkpoint(meta={"loss": 0.1})
    assert checkpointer.list_checkpoints() == [previous]
    assert visible(tmp_path) == [previous.path.name]  # nor any hidden leftover


def test_leftovers_of_a_killed_save_are_hidden_and_removed_at_the_next_save(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path, {"model": torch.nn.Linear(1, 1)})
    # What a process with our pid (a restarted container) left behind when it was killed.
    leftover = tmp_path / f".CKPT+2024-01-01+00-00-00+00.{os.getpid()}.0123abcd.tmp"
    leftover.mkdir(parents=True)
    (leftover / "model.ckpt").write_bytes(b"half")
    (leftover / "CKPT.yaml").write_text("unixtime: 1.0\n")
    assert checkpointer.list_checkpoints() == []
    saved = checkpointer.save_checkpoint()
    assert saved is not None and visible(tmp_path) == [saved.path.name]


def test_a_named_checkpoint_is_replaced_whole(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path, {"model": torch.nn.Linear(1, 1)})
    checkpointer.save_checkpoint(meta={"loss": 1.0}, name="best")
    checkpointer.add_recoverable("counter", Counter())
    checkpointer.save_checkpoint(meta={"loss": 0.5}, name="best")
    (best,) = checkpointer.list_checkpoints()
    assert best.path.name == "CKPT+best" and best.meta["loss"] == 0.5
    assert sorted(best.paramfiles) == ["counter", "model"] and visible(tmp_path) == ["CKPT+best"]


def test_meta_values_are_stored_as_plain_yaml(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path, {"model": torch.nn.Linear(1, 1)})
    meta = {"loss": torch.tensor(0.25), "step": np.int64(3), "acc": np.float32(0.5), "pair": (1, 2)}
    checkpointer.save_checkpoint(meta=meta)
    (found,) = checkpointer.list_checkpoints()
    assert {k: found.meta[k] for k in meta} == {"loss": 0.25, "step": 3, "acc": 0.5, "pair": [1, 2]}
    with pytest.raises(TypeError, match=r"meta\['model'\]"):
        checkpointer.save_checkpoint(meta={"model": torch.nn.Linear(1, 1)})


def test_a_broken_meta_file_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "CKPT+bad"
    folder.mkdir()
    (folder / "CKPT.yaml").write_text("loss: !!python/object:os.system {}\n")
    with pytest.raises(CheckpointError) as broken:
        Checkpointer(tmp_path).list_checkpoints()
    assert "\n" not in str(broken.value) and "CKPT+bad" in str(broken.value)


def test_average_checkpoints_averages_floats_and_keeps_counters(tmp_path: Path) -> None:
    linear, norm = torch.nn.Linear(1, 1), torch.nn.BatchNorm1d(1)
    model = torch.nn.Sequential(linear, norm)
    checkpointer = Checkpointer(tmp_path, {"model": model})
    for value in range(5):
        torch.nn.init.constant_(linear.weight, float(value))
        norm.num_batches_tracked.fill_(value)  # type: ignore[union-attr]
        checkpointer.save_checkpoint()
    last_three = checkpointer.find_checkpoints(max_num_checkpoints=3)
    averaged = average_checkpoints(last_three, "model")
    assert averaged["0.weight"].item() == pytest.approx(3.0)  # (4 + 3 + 2) / 3
    assert averaged["1.num_batches_tracked"].item() == 4  # taken from the first (the newest)
    model.load_state_dict(averaged)
    with pytest.raises(CheckpointError, match="no 'decoder'"):
        average_checkpoints(last_three, "decoder")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB file system (tmpfs; root only, skipped where mounting is refused)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_is_one_line_and_costs_no_checkpoint(small_disk: Path) -> None:
    model = torch.nn.Linear(64, 64)  # about 17 kB a file
    checkpointer = Checkpointer(small_disk / "ckpts", {"model": model})
    previous = checkpointer.save_checkpoint()
    checkpointer.add_recoverable("big", torch.nn.Linear(1024, 1024))  # 4 MB: does not fit
    with pytest.raises(CheckpointError) as full:
        checkpointer.save_checkpoint()
    message = str(full.value)
    assert "\n" not in message and f"No space left on device ({small_disk})" in message
    assert checkpointer.list_checkpoints() == [previous]
    assert visible(small_disk / "ckpts") == [previous.path.name]  # type: ignore[union-attr]


def test_checkpoint_is_a_namedtuple_hashed_by_path(tmp_path: Path) -> None:
    ckpt = Checkpoint(tmp_path, {"unixtime": 1.0}, {})
    assert ckpt._fields == ("path", "meta", "paramfiles") and len({ckpt, ckpt}) == 1


def test_meta_tensors_come_back_as_tensors_saved_as_data(tmp_path: Path) -> None:
    """CKPT.yaml holds their numbers (for min_key and for SpeechBrain's tools); the tensors
    themselves, dtype and shape included, are in CKPT.tensors.pt, loaded as data only."""
    checkpointer = Checkpointer(tmp_path, {"model": torch.nn.Linear(1, 1)})
    saved = checkpointer.save_checkpoint(meta={"loss": torch.tensor(0.25, dtype=torch.float64),
                                               "per_class": {"errors": [torch.tensor([1, 2])]}})
    (found,) = checkpointer.list_checkpoints()
    for meta in (saved.meta, found.meta):
        assert isinstance(meta["loss"], torch.Tensor) and meta["loss"].dtype == torch.float64
        assert torch.equal(meta["per_class"]["errors"][0], torch.tensor([1, 2]))
    assert yaml.safe_load((found.path / "CKPT.yaml").read_text())["loss"] == 0.25
    checkpointer.save_checkpoint(meta={"loss": torch.tensor(0.5)})
    assert checkpointer.find_checkpoint(min_key="loss").path == found.path
    torch.save({"bad": {"__reduce__": 1}}, found.path / "CKPT.tensors.pt")  # not a name -> tensor map
    with pytest.raises(CheckpointError, match="CKPT.tensors.pt"):
        checkpointer.list_checkpoints()


def test_a_missing_recoverable_is_a_runtime_error_as_in_speechbrain(tmp_path: Path) -> None:
    Checkpointer(tmp_path, {"model": torch.nn.Linear(1, 1)}).save_checkpoint()
    later = Checkpointer(tmp_path, {"model": torch.nn.Linear(1, 1), "scheduler": torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=1.0)})
    with pytest.raises(RuntimeError, match=r"has no 'scheduler' \(scheduler.ckpt\)") as missing:
        later.recover_if_possible()
    assert isinstance(missing.value, CheckpointError)
