"""One process per XP: the second is refused by name, a dead holder's lock is taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from baton.xp.folder import XPFolder
from baton.xp.lock import XPBusyError, XPLock, read_owner
from baton.xp.status import KILLED, xp_status


def test_second_holder_is_refused_with_pid_and_host(tmp_path: Path):
    with XPLock(tmp_path / "xp"):
        with pytest.raises(XPBusyError, match=rf"XP xp is already running \(pid {os.getpid()} on "):
            with XPLock(tmp_path / "xp"):
                pass
    # Released on exit: the next one gets it, and the owner record is cleared.
    assert read_owner(tmp_path / "xp") is None
    with XPLock(tmp_path / "xp"):
        assert read_owner(tmp_path / "xp")["pid"] == os.getpid()


def test_lock_of_a_killed_process_is_taken_over(tmp_path: Path):
    folder = tmp_path / "xp"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from baton.xp.lock import XPLock, Heartbeat\n"
            f"with XPLock({str(folder)!r}), Heartbeat({str(folder)!r}):\n"
            "    print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(XPBusyError, match=f"pid {holder.pid}"):
        XPLock(folder).__enter__()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    (folder / ".argv.json").write_text("[]")
    # The holder left its record behind: it reads as killed, and its lock is free.
    assert read_owner(folder)["pid"] == holder.pid
    assert xp_status(XPFolder(folder)) == KILLED
    start = time.monotonic()
    with XPLock(folder):
        assert read_owner(folder)["pid"] == os.getpid()
    assert time.monotonic() - start < 1.0
