"""Run XPs on this machine: one `python -m baton run -f SIG` process each, N at a time.

Each process writes what it prints to `<xp folder>/launcher.log`, so a crash's traceback is kept
next to the XP; the XP's state comes from its own files (see `baton.xp.status`).

An XP may wait for others (`submit(..., after=...)`: a grid's XP that refers to another by
`//sig/`): it starts once they have ended well, and never when one of them failed or was
stopped (it is then listed in `skipped`), whatever `jobs` is.

The launcher owns its children: stopping it stops them, and none is left running without it.

- Each child runs in its own session (`start_new_session=True`), so a signal meant for the
  grid's process group (Ctrl-C in a terminal, a job control hang-up) reaches the grid only, and
  the grid forwards it once, explicitly. Sharing the grid's group would deliver Ctrl-C to every
  child directly *and* through the grid: a child cannot tell one Ctrl-C seen twice from two
  Ctrl-Cs, and a second one means "stop at once, without a checkpoint". The grid cannot tell
  either (a Python handler does not see who sent a signal), so it could not skip the children
  that already got it.
- The first SIGINT / SIGTERM / SIGHUP to the grid is forwarded to each running child (SIGINT as
  SIGINT, SIGTERM and SIGHUP as SIGTERM: the solver's checkpoint-and-stop signals); the grid
  starts nothing more and waits for each child to checkpoint and record its status.
- A second one kills the children's whole process groups at once (SIGKILL) and returns.
- Only SIGKILL to the grid, which no process can catch, leaves its children running (their
  pids are in their XPs' `.lock` files).
- Signal handlers only count signals (a handler may fire in the middle of a write); the poll
  loop does the forwarding.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

LAUNCHER_LOG = "launcher.log"
STOP_SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# What a running child receives when the grid gets each stop signal. A hang-up becomes SIGTERM:
# the solver checkpoints on SIGTERM, while SIGHUP would kill it on the spot.
FORWARDED: dict[int, int] = {signal.SIGINT: signal.SIGINT, signal.SIGTERM: signal.SIGTERM, signal.SIGHUP: signal.SIGTERM}
GRACE_SECONDS = 120.0  # how long `stop()` waits for children to checkpoint before killing them


class StopRequests:
    """The stop signals the grid received, as a count and the first one's number.

    Installed for a `with` block (main thread only: elsewhere Python refuses handlers, and the
    block runs without them). The handler only records: it must do no I/O.
    """

    def __init__(self) -> None:
        self.first: int | None = None
        self.count = 0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.first is None:
            self.first = signum

    def __enter__(self) -> StopRequests:
        for signum in STOP_SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread
                break
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def nap(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking early when a signal arrives (a stop is acted on within
        a tenth of a second, not at the next refresh)."""
        seen, deadline = self.count, time.monotonic() + seconds
        while self.count == seen and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


class LocalLauncher:
    """A queue of XPs run as subprocesses, at most `jobs` at once."""

    def __init__(self, jobs: int = 1, config_dirs: Sequence[str | Path] = ()) -> None:
        self.jobs = max(1, jobs)
        self.config_dirs = [str(d) for d in config_dirs]
        self.pending: list[tuple[str, Path]] = []
        self.after: dict[str, set[str]] = {}  # sig -> the submitted XPs it waits for
        self.skipped: dict[str, str] = {}  # sig -> the XP it waited for that did not end well
        self.running: dict[str, tuple[subprocess.Popen, IO[str]]] = {}
        self.returncodes: dict[str, int] = {}
        self.signalled: set[str] = set()  # running XPs already sent the stop signal
        self.stopping = False

    def submit(self, sig: str, folder: Path, after: Iterable[str] = ()) -> None:
        """Queue an XP; `after` names XPs it waits for (those not submitted here are not waited
        for: an XP that finished before the grid started, say)."""
        self.pending.append((sig, folder))
        self.after[sig] = set(after)

    def command(self, sig: str) -> list[str]:
        dirs = [arg for d in self.config_dirs for arg in ("--config-dir", d)]
        return [sys.executable, "-m", "baton", "run", "-f", sig, *dirs]

    def poll(self) -> bool:
        """Start what fits, reap what ended. Returns True while anything is queued or running."""
        for sig, (process, _) in list(self.running.items()):
            code = process.poll()
            if code is not None:
                self._reaped(sig, code)
        for sig, folder in list(self.pending):
            if len(self.running) >= self.jobs or self.stopping:
                break
            waiting = self._waiting_for(sig)
            if waiting is None:
                self.pending.remove((sig, folder))
                self._start(sig, folder)
        return bool(self.pending or self.running)

    def _waiting_for(self, sig: str) -> str | None:
        """The first XP `sig` still waits for, or None when it may start. Drops it from the
        queue (into `skipped`) when one ended badly, and so on down the chain."""
        queued = {s for s, _ in self.pending}
        for needed in sorted(self.after.get(sig, ())):
            code = self.returncodes.get(needed)
            if code is not None and code != 0:
                self._skip(sig, needed)
                return needed
            if needed in self.skipped:
                self._skip(sig, needed)
                return needed
            if needed in queued or needed in self.running:
                return needed
        return None

    def _skip(self, sig: str, needed: str) -> None:
        self.pending = [(s, f) for s, f in self.pending if s != sig]
        self.skipped[sig] = needed

    def _start(self, sig: str, folder: Path) -> None:
        log = open(folder / LAUNCHER_LOG, "a")
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(self.command(sig))}\n")
        log.flush()
        process = subprocess.Popen(
            self.command(sig),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # signals reach it from this launcher only: see the module doc
        )
        self.running[sig] = (process, log)

    def _reaped(self, sig: str, code: int) -> None:
        _, log = self.running.pop(sig)
        log.close()
        self.returncodes[sig] = code
        self.signalled.discard(sig)

    def wait(
        self,
        refresh: Callable[[], None],
        every: float = 1.0,
        notify: Callable[[str], None] = lambda message: None,
    ) -> int | None:
        """Run everything to the end, calling `refresh` between polls.

        Returns None when every XP ended by itself, or the first stop signal the process got
        (SIGINT, SIGTERM, SIGHUP): then the running XPs were stopped as the module doc says and
        the rest were not started. `notify` gets one line when stopping begins and when it
        escalates. Whatever else ends the wait (an exception), running XPs are stopped first.
        """
        with StopRequests() as requests:
            try:
                while self._advance(requests, notify):
                    refresh()
                    requests.nap(every)
            except BaseException:
                self.stop()
                raise
        refresh()
        return requests.first

    def _advance(self, requests: StopRequests, notify: Callable[[str], None]) -> bool:
        """One turn of the poll loop: act on stop signals (signals first, words after: the
        terminal may be gone), then `poll()`."""
        if requests.count >= 2:
            killed = len(self.running)
            self.kill()
            if killed:
                notify(f"second stop signal: killed {killed} running XP(s)")
            return False
        if requests.first is not None:
            first_time = not self.stopping
            self.stopping = True
            self.pending.clear()
            self.forward(FORWARDED.get(requests.first, signal.SIGTERM))
            if first_time:
                notify(f"{signal.Signals(requests.first).name}: stopping {len(self.running)} running XP(s) "
                       "at their next checkpoint; send it again to kill them at once")
        return self.poll()

    def forward(self, signum: int) -> None:
        """Send `signum` to each running XP that has not been sent it yet."""
        for sig, (process, _) in self.running.items():
            if sig not in self.signalled and process.poll() is None:
                process.send_signal(signum)
                self.signalled.add(sig)

    def kill(self) -> None:
        """Kill every running XP's process group at once (its data workers too) and reap it."""
        self.stopping = True
        self.pending.clear()
        for sig, (process, _) in list(self.running.items()):
            try:
                os.killpg(process.pid, signal.SIGKILL)  # its own group: see the module doc
            except (ProcessLookupError, PermissionError):
                pass  # the group is already gone
            self._reaped(sig, process.wait())

    def stop(self, grace: float = GRACE_SECONDS) -> None:
        """Ask running XPs to checkpoint and stop (SIGTERM); kill those still running after
        `grace` seconds."""
        self.stopping = True
        self.pending.clear()
        self.forward(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for sig, (process, _) in list(self.running.items()):
            try:
                self._reaped(sig, process.wait(timeout=max(0.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
        self.kill()
