"""Loading a checkpoint runs no code from the file unless the user says they trust it."""

from __future__ import annotations

import pathlib
import pickle
import random
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from baton.checkpoint import (
    VERSION,
    CheckpointManager,
    exported_weights,
    read_checkpoint,
    write_atomic,
)
from baton.errors import CheckpointError, UnsafeCheckpointError
from baton.stateful import capture_rng, restore_rng


class TouchOnLoad:
    """Unpickling this creates `marker`: a stand-in for a malicious payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def payload(epoch: int = 1, **extra: Any) -> dict[str, Any]:
    weights = {"model": {"w": torch.full((4,), float(epoch))}}
    state = {"registered": weights, "modules": ["model"], "best_state": weights, "ema": None}
    return {"format": "baton", "version": VERSION, "sig": None, "epoch": epoch, "state": state, **extra}


def test_a_crafted_pickle_is_refused_on_one_line_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.th"
    torch.save(payload(evil=TouchOnLoad(marker)), path)
    with pytest.raises(UnsafeCheckpointError) as refused:
        read_checkpoint(path)
    message = str(refused.value)
    assert "\n" not in message and str(path) in message
    assert "--trust" in message and "checkpoint.trusted=true" in message
    assert not marker.exists()
    read_checkpoint(path, trusted=True)  # the payload was live: trusting the file runs it
    assert marker.exists()


def test_a_refused_latest_is_not_skipped_for_an_older_kept_file(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, None, keep_last=2)
    manager.save(payload()["state"], 1, end_of_epoch=True)
    torch.save(payload(2, note=Fraction(1, 3)), tmp_path / "checkpoint.th")
    with pytest.raises(UnsafeCheckpointError, match="fractions.Fraction"):
        manager.load()  # falling back to epoch 1 would later overwrite the epoch-2 file
    loaded = CheckpointManager(tmp_path, None, trusted=True).load()
    assert loaded is not None and loaded["epoch"] == 2 and loaded["note"] == Fraction(1, 3)


def test_trusted_export_loads_a_pickled_object(tmp_path: Path) -> None:
    torch.save(payload(3, note=Fraction(1, 3)), tmp_path / "checkpoint.th")
    with pytest.raises(UnsafeCheckpointError):
        exported_weights(tmp_path, "last")
    weights = exported_weights(tmp_path, "last", trusted=True)
    assert torch.equal(weights["w"], torch.full((4,), 3.0))


def test_a_damaged_pickle_is_unreadable_not_refused(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.th"
    path.write_bytes(pickle.PROTO + b"\x02" + b"\xff" * 16)  # an unknown opcode, no global
    with pytest.raises(CheckpointError, match="unreadable") as caught:
        read_checkpoint(path)
    assert not isinstance(caught.value, UnsafeCheckpointError)


def draw() -> tuple[Any, ...]:
    return (random.random(), np.random.rand(3).tolist(), np.random.randn(), torch.rand(3).tolist())


def test_rng_states_load_with_weights_only_and_restore_exactly(tmp_path: Path) -> None:
    np.random.seed(7)
    np.random.randn()  # leaves a cached gaussian: part of the state too
    write_atomic(payload(rng=capture_rng()), tmp_path / "checkpoint.th")
    expected = draw()
    data = torch.load(tmp_path / "checkpoint.th", weights_only=True)  # no allowlist at all
    restore_rng(data["rng"])
    assert draw() == expected


def test_old_checkpoints_with_numpy_rng_tuples_still_load_untrusted(tmp_path: Path) -> None:
    legacy = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    write_atomic(payload(rng=legacy), tmp_path / "checkpoint.th")
    expected = draw()
    restore_rng(read_checkpoint(tmp_path / "checkpoint.th")["rng"])
    assert draw() == expected
    with pytest.raises(pickle.UnpicklingError):  # the numpy allowlist was for that load only
        torch.load(tmp_path / "checkpoint.th", weights_only=True)


def test_a_plain_crafted_pickle_is_refused_as_unsafe_first(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    """Not a zip (torch.save never writes one like it): refused by the global it names, before
    torch reads it, and with no torch warning printed ahead of the refusal."""
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.th"
    path.write_bytes(pickle.dumps(TouchOnLoad(marker), protocol=5))
    with pytest.raises(UnsafeCheckpointError, match=r"is refused: loading it needs pathlib.*touch"):
        read_checkpoint(path)
    assert not marker.exists() and not [w for w in recwarn if "pickle" in str(w.message)]
