"""`baton run` stopped by SIGTERM (as SLURM does before a preemption): checkpoint, exit code
128 + 15, status `killed`; running the same command again resumes and finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.xp.conftest import REPO

LONG = ["solver=example", "task.num_train=40000", "optim.epochs=2", "dataset.batch_size=16",
        "logging.tensorboard=false", "checkpoint.every_updates=100"]


def test_sigterm_stops_resumably_and_a_rerun_finishes(clean_env: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "baton", "run", *LONG], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not list(clean_env.glob("xps/*/checkpoint.th")):  # training has begun
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out[-2000:]
    (folder,) = clean_env.glob("xps/*")
    record = json.loads((folder / ".exit.json").read_text())
    assert record["status"] == "killed" and "run again to resume" in record["message"]
    assert (folder / "checkpoint.th").exists() and not (folder / "history.jsonl").exists()

    again = subprocess.run([sys.executable, "-m", "baton", "run", *LONG],
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "resuming" in again.stdout + again.stderr
    assert json.loads((folder / ".exit.json").read_text())["status"] == "done"
    assert len((folder / "history.jsonl").read_text().splitlines()) == 2
