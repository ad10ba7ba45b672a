"""Exact resume: a run killed (SIGKILL, real processes) and restarted ends bit-for-bit equal.

The tests compare final weights, EMA, best state and history.jsonl of an interrupted run with
those of an uninterrupted one. See resume_worker.py for the kill points.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
# 3 epochs of 16 updates (1024 items, batch 32, 2 micro-batches per update), a checkpoint every
# 5 updates inside epochs, EMA, dropout, cosine LR, per-item data noise.
OVERRIDES = [
    "optim.epochs=3",
    "optim.grad_accumulation=2",
    "checkpoint.every_updates=5",
    "logging.tensorboard=false",
    "num_threads=1",
]


def launch(folder: Path, overrides: list[str], **kill: Any) -> subprocess.Popen[bytes]:
    spec = json.dumps({"folder": str(folder), "overrides": overrides, **kill})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.solver.resume_worker", spec],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def run(folder: Path, overrides: list[str], **kill: Any) -> int:
    proc = launch(folder, overrides, **kill)
    out, _ = proc.communicate(timeout=300)
    if kill:
        assert proc.returncode == -signal.SIGKILL, out.decode()[-3000:]
    else:
        assert proc.returncode == 0, out.decode()[-3000:]
    return proc.returncode


def wait_for_training(proc: subprocess.Popen[bytes], folder: Path) -> None:
    """Until the first checkpoint exists, i.e. training is under way."""
    deadline = time.monotonic() + 120
    while not (folder / "checkpoint.th").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)


def final_state(folder: Path) -> dict[str, Any]:
    data = torch.load(folder / "checkpoint.th", weights_only=False)
    assert data["epoch"] == 3
    state = data["state"]
    return {
        "model": state["registered"]["model"],
        "optimizer": state["registered"]["stepper"]["optimizer"]["state"],
        "ema": state["ema"]["averages"],
        "best": state["best"],
        "history": (folder / "history.jsonl").read_bytes(),
    }


def assert_same(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"tensors differ at {where}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    else:
        assert a == b, f"values differ at {where}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("uninterrupted")
    run(folder, OVERRIDES)
    return final_state(folder)


def test_killed_at_many_points_resumes_bit_exact(tmp_path: Path, reference: dict[str, Any]) -> None:
    kills = [
        {"kill_at_update": 7},  # epoch 1, two updates after the mid-epoch checkpoint at 5
        {"kill_in_serialize": 2},  # during the 2nd checkpoint written by this process
        {"kill_at_update": 41},  # epoch 3
        {"kill_before_rename": 1},  # tmp file complete, not yet renamed over checkpoint.th
    ]
    for kill in kills:
        run(tmp_path, OVERRIDES, **kill)
    assert list(tmp_path.glob(".checkpoint*.tmp")), "the last kill left a half-written file"
    run(tmp_path, OVERRIDES)
    assert not list(tmp_path.glob(".checkpoint*.tmp")), "resume removes half-written files"
    assert_same(final_state(tmp_path), reference)


def test_killed_from_outside_at_a_random_moment_resumes_bit_exact(
    tmp_path: Path, reference: dict[str, Any]
) -> None:
    """10 ms per batch makes the 86 batches after the first checkpoint last about a second at
    least, so a kill within 0.8 s of it lands while training: asserted, not assumed."""
    proc = launch(tmp_path, OVERRIDES, seconds_per_batch=0.01)
    wait_for_training(proc, tmp_path)
    time.sleep(random.uniform(0.0, 0.8))
    assert proc.poll() is None, "the run ended before the kill: this test would test nothing"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert torch.load(tmp_path / "checkpoint.th", weights_only=False)["epoch"] < 3  # killed mid-run
    run(tmp_path, OVERRIDES)
    assert_same(final_state(tmp_path), reference)


def test_sigterm_saves_at_the_next_update_and_resumes_bit_exact(
    tmp_path: Path, reference: dict[str, Any]
) -> None:
    proc = launch(tmp_path, OVERRIDES)
    wait_for_training(proc, tmp_path)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, out.decode()[-2000:]
    assert b"checkpoint saved; run again to resume" in out
    run(tmp_path, OVERRIDES)
    assert_same(final_state(tmp_path), reference)


def test_resume_with_two_workers_and_async_save(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    overrides = OVERRIDES + ["dataset.num_workers=2", "checkpoint.async_save=true"]
    straight = tmp_path_factory.mktemp("straight")
    run(straight, overrides)
    run(tmp_path, overrides, kill_at_update=23)
    run(tmp_path, overrides)
    assert_same(final_state(tmp_path), final_state(straight))
