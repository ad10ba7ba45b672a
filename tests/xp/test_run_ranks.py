"""`baton run` started once per rank (as torchrun does): only rank 0 touches the folder, the
others wait for it, and a refused start never leaves a rank hanging."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from baton.xp.lock import XPLock
from tests.xp.conftest import QUICK, REPO


def run_ranks(*args: str, world: int = 2) -> list[subprocess.CompletedProcess[str]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = []
    for rank in range(world):
        env = {**os.environ, "PYTHONPATH": str(REPO), "RANK": str(rank), "LOCAL_RANK": str(rank),
               "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen([sys.executable, "-m", "baton", "run", *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def test_two_ranks_run_and_clear_one_xp(clean_env: Path) -> None:
    for extra in ([], ["--clear"]):
        results = run_ranks(*QUICK, "dataset.batch_size=16", *extra)
        assert [r.returncode for r in results] == [0, 0], results[1].stderr[-2000:]
    (folder,) = clean_env.glob("xps/*")
    assert (folder / "worker_1.log").exists() and len((folder / "history.jsonl").read_text().splitlines()) == 4


def test_a_refused_rank_zero_stops_every_rank(clean_env: Path) -> None:
    dry = subprocess.run([sys.executable, "-m", "baton", "run", *QUICK, "--dry_run"], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    folder = Path(dry.stdout.split("folder: ")[1].split(" (")[0])
    start = time.monotonic()
    with XPLock(folder):  # another process runs this XP
        results = run_ranks(*QUICK)
    assert time.monotonic() - start < 120
    assert [r.returncode for r in results] == [2, 2]
    assert "already running" in results[0].stderr and "rank 0 could not start XP" in results[1].stderr
