"""What state an XP is in, from files alone: its lock, heartbeat and exit record.

new      `.argv.json` only: declared (by `grid --dry_run` or `--init`) but never run
running  a live process holds the lock (same host: its pid; other host: a fresh heartbeat)
done     the last run trained to `optim.epochs`
killed   the last run stopped early (signal, Ctrl-C) or died without an exit record
failed   the last run raised; the exit record holds the error line
"""

from __future__ import annotations

import errno
import json
import math
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baton.atomic import write_text_atomic
from baton.config.signature import format_delta
from baton.errors import UserError
from baton.xp.folder import ARGV, HISTORY, XPFolder
from baton.xp.lock import HEARTBEAT, HEARTBEAT_SECONDS, heartbeat_age, read_owner

NEW, RUNNING, DONE, KILLED, FAILED = "new", "running", "done", "killed", "failed"
CORRUPT = "corrupt"  # an XP file cannot be read; shown by ls/info, never written
EXIT = ".exit.json"
# Room kept for the exit record while a run goes on: a tmpfs or disk page, and then some.
EXIT_RESERVE = ".exit.reserve"
EXIT_RESERVE_BYTES = 64 * 1024
DELTA = ".delta.json"
STALE_AFTER = 6 * HEARTBEAT_SECONDS


def write_exit(folder: XPFolder, status: str, message: str = "") -> None:
    """Record how the run ended. On a full disk the space `reserve_exit_space` set aside is given
    up for it: a run that filled the disk is still recorded as failed, not taken for killed."""
    record = {"status": status, "message": message, "time": time.time(), "pid": os.getpid()}
    try:
        write_text_atomic(folder.path / EXIT, json.dumps(record) + "\n")
    except OSError as exc:
        reserve = folder.path / EXIT_RESERVE
        if exc.errno != errno.ENOSPC or not reserve.exists():
            raise
        reserve.unlink()
        write_text_atomic(folder.path / EXIT, json.dumps(record) + "\n")
    (folder.path / EXIT_RESERVE).unlink(missing_ok=True)


def reserve_exit_space(folder: XPFolder) -> None:
    """Set aside room for the exit record while the run goes on (see `write_exit`); best effort:
    a disk already too full for this fails at the run's first real write, with its own line."""
    try:
        (folder.path / EXIT_RESERVE).write_bytes(bytes(EXIT_RESERVE_BYTES))
    except OSError:
        (folder.path / EXIT_RESERVE).unlink(missing_ok=True)


def clear_exit(folder: XPFolder) -> None:
    (folder.path / EXIT).unlink(missing_ok=True)


def read_exit(folder: XPFolder) -> dict[str, Any] | None:
    """The last run's exit record; None when missing or damaged (the status then falls back on
    the heartbeat, as for a run that died without writing one)."""
    try:
        record = json.loads((folder.path / EXIT).read_text())
    except (OSError, ValueError):  # ValueError: bad JSON, or bytes that are not UTF-8
        return None
    return record if isinstance(record, dict) else None


def write_delta(folder: XPFolder, delta: list[tuple[str, Any]]) -> None:
    """Store the delta so `ls` and grids show it without composing every XP again."""
    write_text_atomic(folder.path / DELTA, json.dumps([list(kv) for kv in delta]) + "\n")


def read_delta(folder: XPFolder) -> list[tuple[str, Any]] | None:
    """The stored delta; None when missing or damaged (callers show the overrides instead)."""
    try:
        pairs = json.loads((folder.path / DELTA).read_text())
    except (OSError, ValueError):  # ValueError: bad JSON, or bytes that are not UTF-8
        return None
    if not isinstance(pairs, list) or not all(isinstance(kv, list) and len(kv) == 2 for kv in pairs):
        return None
    return [(str(k), v) for k, v in pairs]


def xp_status(folder: XPFolder) -> str:
    owner = read_owner(folder.path)
    age = heartbeat_age(folder.path)
    fresh = age is not None and age < STALE_AFTER
    if owner:
        if owner.get("host") == socket.gethostname():
            alive = _pid_alive(int(owner.get("pid", -1))) and fresh
        else:
            alive = fresh
        return RUNNING if alive else KILLED
    record = read_exit(folder)
    if record:
        return str(record.get("status", FAILED))
    return KILLED if age is not None else NEW


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Summary:
    """What `ls`, `info` and grids show for one XP."""

    sig: str
    folder: Path
    status: str
    epoch: int
    delta_text: str
    history: list[dict[str, dict[str, float]]] = field(repr=False)
    best: float | None
    best_key: str
    age: float
    message: str = ""

    def metric(self, dotted: str) -> float | None:
        """The last value of 'stage.metric' ('valid.loss'), or None."""
        stage, _, name = dotted.partition(".")
        for entry in reversed(self.history):
            if name in entry.get(stage, {}):
                return entry[stage][name]
        return None


def summarize(folder: XPFolder) -> Summary:
    """What `ls` and `info` show of an XP; a damaged folder shows as `corrupt`, naming the file
    (and line), so one bad file never stops a listing of every XP."""
    try:
        return _summarize(folder)
    except UserError as exc:
        delta = read_delta(folder)  # never raises: still names the XP in the listing
        return Summary(sig=folder.sig, folder=folder.path, status=CORRUPT, epoch=0,
                       delta_text=format_delta(delta) if delta is not None else "?",
                       history=[], best=None, best_key="", age=time.time() - _last_activity(folder.path),
                       message=str(exc))


def _summarize(folder: XPFolder) -> Summary:
    history = folder.history()
    cfg = folder.config()
    best_cfg = cfg.best_metric if cfg is not None and "best_metric" in cfg else None
    stage, name, direction = (
        (str(best_cfg.stage), str(best_cfg.name), str(best_cfg.direction))
        if best_cfg is not None
        else ("valid", "loss", "min")
    )
    values = [
        entry[stage][name]
        for entry in history
        if isinstance(entry.get(stage, {}).get(name), (int, float))
        and math.isfinite(entry[stage][name])
    ]
    best = (max if direction == "max" else min)(values) if values else None
    delta = read_delta(folder)
    delta_text = format_delta(delta) if delta is not None else " ".join(folder.argv())
    record = read_exit(folder) or {}
    return Summary(
        sig=folder.sig,
        folder=folder.path,
        status=xp_status(folder),
        epoch=len(history),
        delta_text=delta_text,
        history=history,
        best=best,
        best_key=f"{stage}.{name}",
        age=time.time() - _last_activity(folder.path),
        message=str(record.get("message", "")),
    )


def _last_activity(path: Path) -> float:
    times = []
    for name in (ARGV, HISTORY, HEARTBEAT, EXIT):
        try:
            times.append((path / name).stat().st_mtime)
        except OSError:
            pass
    return max(times, default=time.time())
