"""Run XPs on this machine: one `python -m baton run -f SIG` process each, N at a time.

Each process writes what it prints to `<xp folder>/launcher.log`, so a crash's traceback is kept
next to the XP; the XP's state comes from its own files (see `baton.xp.status`).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

LAUNCHER_LOG = "launcher.log"


class LocalLauncher:
    """A queue of XPs run as subprocesses, at most `jobs` at once."""

    def __init__(self, jobs: int = 1, config_dirs: Sequence[str | Path] = ()) -> None:
        self.jobs = max(1, jobs)
        self.config_dirs = [str(d) for d in config_dirs]
        self.pending: list[tuple[str, Path]] = []
        self.running: dict[str, tuple[subprocess.Popen, IO[str]]] = {}
        self.returncodes: dict[str, int] = {}

    def submit(self, sig: str, folder: Path) -> None:
        self.pending.append((sig, folder))

    def command(self, sig: str) -> list[str]:
        dirs = [arg for d in self.config_dirs for arg in ("--config-dir", d)]
        return [sys.executable, "-m", "baton", "run", "-f", sig, *dirs]

    def poll(self) -> bool:
        """Start what fits, reap what ended. Returns True while anything is queued or running."""
        for sig, (process, log) in list(self.running.items()):
            code = process.poll()
            if code is not None:
                log.close()
                self.returncodes[sig] = code
                del self.running[sig]
        while self.pending and len(self.running) < self.jobs:
            sig, folder = self.pending.pop(0)
            log = open(folder / LAUNCHER_LOG, "a")
            log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(self.command(sig))}\n")
            log.flush()
            process = subprocess.Popen(
                self.command(sig), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            self.running[sig] = (process, log)
        return bool(self.pending or self.running)

    def wait(self, refresh: Callable[[], None], every: float = 1.0) -> None:
        """Run everything to the end, calling `refresh` between polls."""
        try:
            while self.poll():
                refresh()
                time.sleep(every)
        except KeyboardInterrupt:
            self.stop()
            raise
        refresh()

    def stop(self) -> None:
        """Ask running XPs to checkpoint and stop (SIGTERM), and wait for them."""
        self.pending.clear()
        for process, _ in self.running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for sig, (process, log) in list(self.running.items()):
            try:
                self.returncodes[sig] = process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                self.returncodes[sig] = process.wait()
            log.close()
        self.running.clear()

