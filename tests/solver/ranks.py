"""Processes started one per rank, as torchrun starts them (RANK, LOCAL_RANK, WORLD_SIZE and
MASTER_* in the environment), for the multi-process tests; one process alone gets none of them
and runs undistributed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_ranks(folder: Path, overrides: list[str], port: int | None = None, *, world: int = 2,
                 module: str = "tests.solver.ddp_worker", args: tuple[str, ...] = ()) -> list[subprocess.Popen[bytes]]:
    """`python -m MODULE FOLDER *ARGS *OVERRIDES` on `world` ranks (a free port when None)."""
    port = free_port() if port is None else port
    procs = []
    for rank in range(world):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if world > 1:
            env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, "-m", module, str(folder), *args, *overrides],
                                      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    return procs


def finish(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    """Every rank's exit code, once all have exited: done (0) or stopped by a signal (128 + it)."""
    codes = []
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        codes.append(proc.returncode)
        assert proc.returncode in (0, 128 + signal.SIGTERM, 128 + signal.SIGINT), out.decode()[-3000:]
    return codes
