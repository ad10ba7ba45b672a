"""One process per XP: a lock on `<folder>/.lock`, and a heartbeat while it runs.

The lock is an `flock` on a file that is never deleted, so the kernel drops it when the holder
dies and a stale lock from a killed process is simply taken over. The file's content names the
holder (pid, host, start) for the refusal message and for `baton ls`; it is emptied on a clean
exit. Deleting the file instead would let two processes lock two different inodes.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from baton.errors import UserError

LOCK = ".lock"
HEARTBEAT = ".heartbeat"
HEARTBEAT_SECONDS = 10.0


class XPBusyError(UserError):
    """Another process is running this XP."""


class XPLock:
    """Hold the XP's lock for the duration of a `with` block.

    Raises:
        XPBusyError: on enter, when another live process holds it.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._handle: Any = None

    def __enter__(self) -> XPLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / LOCK, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            owner = read_owner(self.folder)
            who = (
                f"pid {owner.get('pid')} on {owner.get('host')} since {owner.get('started')}"
                if owner
                else "another process"
            )
            raise XPBusyError(
                f"XP {self.folder.name} is already running ({who}); wait for it to finish "
                "or stop that process"
            ) from None
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(owner))
        handle.flush()
        os.fsync(handle.fileno())
        self._handle = handle
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        handle.seek(0)
        handle.truncate()
        handle.flush()
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


def read_owner(folder: str | Path) -> dict[str, Any] | None:
    """The lock holder recorded in the file (may be stale if it was killed), or None."""
    try:
        text = (Path(folder) / LOCK).read_text()
        owner = json.loads(text) if text.strip() else None
    except (OSError, ValueError):  # ValueError: bad JSON, or bytes that are not UTF-8
        return None
    return owner if isinstance(owner, dict) else None


class Heartbeat:
    """Touch `<folder>/.heartbeat` every few seconds from a daemon thread while running.

    Lets `ls` on another host tell a live run from one whose machine died.
    """

    def __init__(self, folder: str | Path, every: float = HEARTBEAT_SECONDS) -> None:
        self.path = Path(folder) / HEARTBEAT
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="baton-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.path.write_text(str(time.time()))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.path.write_text(str(time.time()))
            except OSError:
                pass  # a full disk must not kill training; the status just looks stale.


def heartbeat_age(folder: str | Path) -> float | None:
    try:
        return time.time() - (Path(folder) / HEARTBEAT).stat().st_mtime
    except OSError:
        return None
