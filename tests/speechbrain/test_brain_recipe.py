"""A SpeechBrain-style recipe (brain_recipe/: train.py + HyperPyYAML hparams) run as a real
process: the experiment folder, best-checkpoint evaluation, and exact resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
RECIPE = Path(__file__).parent / "brain_recipe"


def run_recipe(folder: Path, *args: str, killed: bool = False, exit_code: int = 0) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(RECIPE / "train.py"), str(RECIPE / "hparams.yaml"), "--output_folder", str(folder),
         "--noprogressbar", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == (-signal.SIGKILL if killed else exit_code), out[-3000:]
    return out


def printed_test_stats(out: str) -> dict[str, float]:
    line = next(line for line in out.splitlines() if line.startswith("TEST "))
    return json.loads(line[5:].replace("'", '"'))


def checkpoints(folder: Path) -> list[dict[str, Any]]:
    import yaml

    found = []
    for path in sorted((folder / "save").glob("CKPT+*")):
        found.append({"path": path, **yaml.safe_load((path / "CKPT.yaml").read_text())})
    return found


def test_recipe_writes_the_experiment_folder_and_evaluates_the_best_checkpoint(tmp_path):
    out = run_recipe(tmp_path, "--worse_at_epoch", "4")
    for name in ("hyperparams.yaml", "log.txt", "env.log", "train.py", "history.jsonl", "solver.log"):
        assert (tmp_path / name).is_file(), name
    assert "worse_at_epoch: 4" in (tmp_path / "hyperparams.yaml").read_text()
    assert f"save_folder: {tmp_path}/save" in (tmp_path / "hyperparams.yaml").read_text()
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    valid_losses = [epoch["valid"]["loss"] for epoch in history]
    assert len(valid_losses) == 4 and valid_losses[-1] > min(valid_losses[:-1])  # the last epoch is worse
    # The best by loss and the newest are kept; evaluate loads the best.
    kept = checkpoints(tmp_path)
    assert len(kept) == 2 and all(c["end-of-epoch"] for c in kept)
    best = min(kept, key=lambda c: c["loss"])
    assert best["loss"] == pytest.approx(min(valid_losses))
    test = printed_test_stats(out)
    assert test["loss"] == pytest.approx(best["loss"])  # the test set is the valid set here
    assert test["loss"] < valid_losses[-1]
    assert history[-1]["test"]["loss"] == pytest.approx(test["loss"])


def newest_model(folder: Path) -> dict[str, torch.Tensor]:
    newest = max(checkpoints(folder), key=lambda c: c["unixtime"])
    return torch.load(newest["path"] / "model.ckpt", weights_only=True)


@pytest.mark.parametrize(  # inside epoch 1 (32 updates per epoch); the epoch-2 boundary
    "kill_at_update", [21, pytest.param(64, marks=pytest.mark.slow)]
)
def test_a_recipe_killed_mid_epoch_resumes_at_the_next_batch_bit_for_bit(tmp_path, kill_at_update):
    straight = run_recipe(tmp_path / "straight", "--ckpt_interval_steps", "5")
    run_recipe(tmp_path / "killed", "--ckpt_interval_steps", "5", "--kill_at_update", str(kill_at_update), killed=True)
    resumed = run_recipe(tmp_path / "killed", "--ckpt_interval_steps", "5")
    assert "resuming from" in resumed
    expected, got = newest_model(tmp_path / "straight"), newest_model(tmp_path / "killed")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert (tmp_path / "straight" / "history.jsonl").read_text() == (tmp_path / "killed" / "history.jsonl").read_text()
    assert printed_test_stats(straight) == printed_test_stats(resumed)
    # Mid-epoch checkpoints are replaced as training goes on and gone once an epoch ends.
    assert not any("brain_intra_epoch_ckpt" in c for c in checkpoints(tmp_path / "killed"))


@pytest.mark.slow
def test_sigterm_during_valid_checkpoints_at_the_epoch_boundary_and_resumes_exactly(tmp_path):
    straight = run_recipe(tmp_path / "straight")
    stopped = run_recipe(tmp_path / "stopped", "--sigterm_in_valid_of_epoch", "2", exit_code=128 + signal.SIGTERM)
    assert "stopped by SIGTERM during epoch 2" in stopped
    history = (tmp_path / "stopped" / "history.jsonl").read_text().splitlines()
    assert len(history) == 2  # the valid pass finished: epoch 2 is whole
    resumed = run_recipe(tmp_path / "stopped")
    assert "resuming from" in resumed and "at the start of epoch 3" in resumed
    expected, got = newest_model(tmp_path / "straight"), newest_model(tmp_path / "stopped")
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert (tmp_path / "straight" / "history.jsonl").read_text() == (tmp_path / "stopped" / "history.jsonl").read_text()
    assert printed_test_stats(straight) == printed_test_stats(resumed)
