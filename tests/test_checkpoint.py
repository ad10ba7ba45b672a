"""Checkpoints are atomic, pruned only after a complete write, checked on load."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from baton.checkpoint import (
    CheckpointManager,
    exported_weights,
    kept_epochs,
    read_checkpoint,
    write_atomic,
)
from baton.errors import CheckpointError


def state(value: float) -> dict:
    return {"registered": {"model": {"w": torch.full((4,), value)}}, "modules": ["model"],
            "best": {"primary": "loss", "values": {"loss": -value},
                     "states": {"loss": {"model": {"w": torch.full((4,), -value)}}}}, "ema": None}


def test_keep_last_and_keep_every(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, "abc", keep_last=2, keep_every=3)
    for epoch in range(1, 8):
        manager.save(state(epoch), epoch, end_of_epoch=True)
    assert kept_epochs(tmp_path) == [3, 6, 7]
    assert read_checkpoint(tmp_path / "checkpoint.th")["epoch"] == 7
    kept = read_checkpoint(tmp_path / "checkpoint_6.th", "abc")
    assert torch.equal(kept["state"]["registered"]["model"]["w"], torch.full((4,), 6.0))


def test_mid_epoch_saves_replace_latest_only(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, None, keep_last=1)
    manager.save(state(1), 1, end_of_epoch=True)
    manager.save(state(1.5), 1, end_of_epoch=False)
    assert kept_epochs(tmp_path) == [1]
    latest = read_checkpoint(tmp_path / "checkpoint.th")["state"]["registered"]["model"]["w"]
    assert torch.equal(latest, torch.full((4,), 1.5))


def test_truncated_latest_falls_back_to_previous_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    manager = CheckpointManager(tmp_path, "abc", keep_last=3)
    for epoch in (1, 2, 3):
        manager.save(state(epoch), epoch, end_of_epoch=True)
    data = (tmp_path / "checkpoint.th").read_bytes()
    with open(tmp_path / "checkpoint.th", "r+b") as f:  # in place: kept files are copies
        f.truncate(len(data) // 2)
    with caplog.at_level(logging.WARNING):
        loaded = manager.load()
    assert loaded is not None and loaded["epoch"] == 3
    (tmp_path / "checkpoint_3.th").write_bytes(b"")
    assert manager.load()["epoch"] == 2
    messages = [r.getMessage() for r in caplog.records]
    assert any("checkpoint.th is unreadable (truncated or corrupt" in m for m in messages)
    assert all("\n" not in m for m in messages)


def test_foreign_signature_is_refused(tmp_path: Path) -> None:
    CheckpointManager(tmp_path, "aaaa1111").save(state(1), 1, end_of_epoch=True)
    with pytest.raises(CheckpointError, match="belongs to XP aaaa1111, not bbbb2222"):
        CheckpointManager(tmp_path, "bbbb2222").load()


def test_not_a_checkpoint_and_newer_version(tmp_path: Path) -> None:
    torch.save({"weights": 1}, tmp_path / "other.th")
    with pytest.raises(CheckpointError, match="not a baton checkpoint"):
        read_checkpoint(tmp_path / "other.th")
    torch.save({"format": "baton", "version": 99, "sig": None, "epoch": 1, "state": {}}, tmp_path / "new.th")
    with pytest.raises(CheckpointError, match="upgrade baton"):
        read_checkpoint(tmp_path / "new.th")


def test_failed_write_keeps_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.th"
    write_atomic({"format": "baton", "version": 2, "sig": None, "epoch": 1, "state": {}}, path)

    class Unpicklable:
        def __reduce__(self):
            raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomic({"bad": Unpicklable()}, path)
    assert read_checkpoint(path)["epoch"] == 1
    assert not list(tmp_path.glob(".*.tmp"))


def test_no_usable_checkpoint_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    (tmp_path / "checkpoint.th").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        CheckpointManager(tmp_path).load()
    assert (tmp_path / "checkpoint.th").read_bytes() == b"garbage"


def test_async_save_writes_a_snapshot(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, None, async_save=True)
    live = state(1.0)
    manager.save(live, 1, end_of_epoch=True)
    live["registered"]["model"]["w"].fill_(42.0)  # training goes on changing the weights
    manager.wait()
    saved = read_checkpoint(tmp_path / "checkpoint.th")["state"]["registered"]["model"]["w"]
    assert torch.equal(saved, torch.full((4,), 1.0))


def test_exported_weights(tmp_path: Path) -> None:
    CheckpointManager(tmp_path).save(state(2.0), 1, end_of_epoch=True)
    assert torch.equal(exported_weights(tmp_path, "best")["w"], torch.full((4,), -2.0))
    assert torch.equal(exported_weights(tmp_path, "last")["w"], torch.full((4,), 2.0))
    with pytest.raises(CheckpointError, match="no 'ema' weights"):
        exported_weights(tmp_path, "ema")


def test_a_version_1_file_is_upgraded_on_read(tmp_path: Path) -> None:
    """Format 1 kept one best state (`best_state`, `loop.best_value`); it reads as the primary
    metric's best state, so XPs written before resume and export as before."""
    weights = {"model": {"w": torch.full((4,), 3.0)}}
    old = {"format": "baton", "version": 1, "sig": None, "epoch": 2,
           "state": {"registered": weights, "modules": ["model"], "best_state": weights, "ema": None,
                     "loop": {"best_value": 0.5, "epoch": 3}}}
    torch.save(old, tmp_path / "checkpoint.th")
    data = read_checkpoint(tmp_path / "checkpoint.th")
    assert data["version"] == 2 and data["state"]["loop"]["stopped_early"] is False
    best = data["state"]["best"]
    assert best["primary"] is None and best["values"] == {None: 0.5} and best["states"][None] is not None
    assert torch.equal(exported_weights(tmp_path, "best")["w"], torch.full((4,), 3.0))

    from baton.solver.best import BestStates
    from baton.solver.settings import MetricSpec

    tracked = BestStates(MetricSpec("loss"))
    tracked.load_state_dict(best)
    assert tracked.value() == 0.5 and torch.equal(tracked.state()["model"]["w"], weights["model"]["w"])


def test_a_failed_first_save_does_not_promise_a_previous_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    manager = CheckpointManager(tmp_path / "a_file" / "xp", None)  # its folder cannot be made
    with pytest.raises(CheckpointError, match="this was the XP's first checkpoint, so a rerun starts afresh") as failed:
        manager.save({"w": torch.zeros(1)}, 0, end_of_epoch=False)
    assert "previous checkpoint is intact" not in str(failed.value) and "\n" not in str(failed.value)
