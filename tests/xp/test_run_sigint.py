"""Ctrl-C saves: the first SIGINT to `baton run` checkpoints at the next update (in train) or
once the epoch is committed (in valid), exits 130 with status `killed`, and a rerun ends with the
same weights, bit for bit, as a run never interrupted. A second Ctrl-C stops at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.xp.conftest import REPO

ARGS = ["solver=example", "task.num_train=12000", "task.num_valid=60000", "optim.epochs=2",
        "dataset.batch_size=16", "logging.tensorboard=false", "logging.log_every=20", "num_threads=1"]


def start(xp_dir: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "BATON_XP_DIR": str(xp_dir)}
    return subprocess.Popen([sys.executable, "-m", "baton", "run", *ARGS, *extra], env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for_line(proc: subprocess.Popen[str], text: str, seen: list[str]) -> None:
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, "".join(seen)[-2000:]
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"no line with {text!r}")


def final_weights(xp_dir: Path) -> dict[str, torch.Tensor]:
    (checkpoint,) = xp_dir.glob("xps/*/checkpoint.th")
    return torch.load(checkpoint, weights_only=True)["state"]["registered"]["model"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    xp_dir = tmp_path_factory.mktemp("straight")
    proc = start(xp_dir)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-2000:]
    return final_weights(xp_dir)


@pytest.mark.parametrize("moment, line", [("train", "Train 1 40/"), ("valid", "Valid 1 ")])
def test_first_ctrl_c_checkpoints_and_resumes_bit_exact(
    tmp_path: Path, uninterrupted: dict[str, torch.Tensor], moment: str, line: str
) -> None:
    proc, seen = start(tmp_path), []
    wait_for_line(proc, line, seen)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    output = "".join(seen) + out
    assert proc.returncode == 130, output[-2000:]
    assert "Ctrl-C: checkpointing at the next update" in output
    (folder,) = tmp_path.glob("xps/*")
    record = json.loads((folder / ".exit.json").read_text())
    assert record["status"] == "killed"
    assert record["message"] == "stopped by SIGINT during epoch 1; run again to resume"
    history = (folder / "history.jsonl").read_text().splitlines() if (folder / "history.jsonl").exists() else []
    assert len(history) == (1 if moment == "valid" else 0)  # a valid-time stop keeps the epoch

    env = {**os.environ, "PYTHONPATH": str(REPO), "BATON_XP_DIR": str(tmp_path)}
    again = subprocess.run([sys.executable, "-m", "baton", "run", *ARGS], env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:]
    for key, value in uninterrupted.items():
        assert torch.equal(final_weights(tmp_path)[key], value), key


def test_second_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    # A valid pass of seconds, and no progress lines for the reader to wade through.
    proc, seen = start(tmp_path, "task.num_valid=600000", "logging.log_every=1000000"), []
    wait_for_line(proc, "Train | epoch 1", seen)  # valid starts now: a stop waits for its end
    proc.send_signal(signal.SIGINT)
    wait_for_line(proc, "Ctrl-C", seen)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out[-2000:]
    (folder,) = tmp_path.glob("xps/*")
    record = json.loads((folder / ".exit.json").read_text())
    assert record["status"] == "killed" and "second Ctrl-C" in record["message"]
    assert not (folder / "history.jsonl").exists()  # it did not wait for the epoch to end
