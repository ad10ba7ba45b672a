"""When to checkpoint inside an epoch and when to stop, decided alike on every rank.

A stop signal (SIGTERM, SIGUSR1: a cluster's preemption or time limit) only sets a flag; the
loop checkpoints at the next update boundary and stops. Saves come every N updates and/or
every T seconds. Under DDP every rank must decide alike, or one would save or stop alone while
the others wait in a collective: saves every N updates agree by construction; a signal (which
may reach one rank only) or a timed save is agreed every AGREE_EVERY updates with one small
all-reduce (one per update would cost a device sync per update).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

from .. import distrib

AGREE_EVERY = 10


class StopSignal:
    """Turns SIGTERM / SIGUSR1 / SIGINT into a flag the loop checks at the next update.

    A handler must not do Python I/O (it may fire inside a checkpoint write, or inside a print),
    so it only records the signal; the solver saves a checkpoint at the next safe point and
    stops. The first Ctrl-C (SIGINT) says so on one line, written with a bare os.write (no
    buffered stream, no lock); a second one raises KeyboardInterrupt at once, as Python would:
    the user insists, and the atomic writes leave the previous checkpoint whole.
    """

    SIGNALS = ("SIGTERM", "SIGUSR1", "SIGINT")
    NOTICE = b"\nbaton: Ctrl-C: checkpointing at the next update, then stopping (Ctrl-C again: stop now)\n"

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT:
            if self.received == signal.SIGINT:
                raise KeyboardInterrupt
            # Recorded before the notice is written: Python runs a handler between any two
            # bytecodes, also inside this one, so a second Ctrl-C sent on reading the notice
            # must find the first one recorded (else both count as a first, and nothing stops).
            self.received = signum
            with contextlib.suppress(OSError):
                os.write(2, self.NOTICE)
        elif self.received is None:
            self.received = signum

    def install(self) -> None:
        self.received = None  # a signal that stopped an earlier run() is not this run's
        for name in self.SIGNALS:
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                return

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


class Cadence:
    """Save and stop decisions at update boundaries and epoch ends.

    Args:
        every_updates: save inside an epoch every N updates (0: never).
        every_seconds: save inside an epoch when this many seconds passed since the last save (0: never).
    """

    def __init__(self, every_updates: int = 0, every_seconds: float = 0.0) -> None:
        self.every_updates = every_updates
        self.every_seconds = every_seconds
        self.signal = StopSignal()
        self._last_save = time.monotonic()
        # Whether ranks must agree; read at each stage start (asking torch every update costs).
        self.distributed = False

    def saved(self) -> None:
        """A checkpoint was just written: timed saves count from now."""
        self._last_save = time.monotonic()

    def after_update(self, update: int) -> tuple[int | None, bool]:
        """After update number `update`: the stop signal to obey (or None), and whether to save."""
        save = bool(self.every_updates) and update % self.every_updates == 0
        timed = bool(self.every_seconds) and time.monotonic() - self._last_save >= self.every_seconds
        signal_number = self.signal.received
        if self.distributed:
            if update % AGREE_EVERY:
                return None, save
            got, due = distrib.all_reduce_max([float(signal_number or 0), float(timed)])
            signal_number, timed = (int(got) or None), due > 0
        return signal_number, save or timed

    def stop_at_epoch_end(self) -> int | None:
        """The stop signal any rank received during the epoch's other stages. Collective."""
        stop = self.signal.received
        if distrib.is_distributed():
            stop = int(distrib.all_reduce_max([float(stop or 0)])[0]) or None
        return stop
