"""Exact resume of a config-driven GAN: killed by SIGKILL in the middle of an update (between
its generator and discriminator steps), run again, it ends bit-identical to an uninterrupted
run: both networks, both steps' optimizer and scheduler states, and history.jsonl."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from tests.solver.test_resume import assert_same

ROOT = Path(__file__).resolve().parents[2]
OVERRIDES = ["optim.epochs=2", "optim.updates_per_epoch=6", "checkpoint.every_updates=2", "num_threads=1"]


def run(xp_root: Path, data: Path, kill_at_update: int | None = None) -> str:
    spec = json.dumps({"overrides": OVERRIDES, "kill_at_update": kill_at_update})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BATON_DATA_DIR": str(data), "BATON_XP_DIR": str(xp_root)}
    proc = subprocess.run([sys.executable, "-m", "tests.solver.extensible_resume_worker", spec],
                          cwd=ROOT, env=env, capture_output=True, timeout=300)
    out = (proc.stdout + proc.stderr).decode()
    if kill_at_update is None:
        assert proc.returncode == 0, out[-3000:]
        return proc.stdout.decode().strip().splitlines()[-1]
    assert proc.returncode == -signal.SIGKILL, out[-3000:]
    return ""


def final_state(folder: Path) -> dict[str, Any]:
    data = torch.load(Path(folder) / "checkpoint.th", weights_only=True)
    assert data["epoch"] == 2
    registered = data["state"]["registered"]
    return {"networks": registered["networks"], "optimizers": registered["optimizers"],
            "history": (Path(folder) / "history.jsonl").read_bytes()}


def test_killed_mid_update_resumes_bit_exact(synth_cache: Path, tmp_path: Path) -> None:
    reference = final_state(Path(run(tmp_path / "straight", synth_cache)))
    interrupted = tmp_path / "killed"
    run(interrupted, synth_cache, kill_at_update=3)  # epoch 1, one update after the save at 2
    run(interrupted, synth_cache, kill_at_update=9)  # epoch 2, after its restart
    folder = run(interrupted, synth_cache)
    assert_same(final_state(Path(folder)), reference)
    assert reference["optimizers"]["generator"]["scheduler"]["last_epoch"] == 12

