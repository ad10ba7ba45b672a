"""A grid owns its XPs: a stop signal to `baton grid` reaches each running XP once, the grid
waits for them to checkpoint and record `killed`, and exits 128 + signal; a second signal kills
them at once. No XP process outlives the grid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from baton.xp import status as st
from baton.xp.folder import XPFolder, all_xps
from baton.xp.lock import read_owner
from tests.xp.conftest import REPO, STAND_IN

# Two example XPs that train for minutes, checkpointing every 50 updates.
LONG_GRID = """\
from baton.xp.explore import explorer

@explorer(metrics=["train.loss"])
def explore(launcher):
    launcher.bind_(solver="example", task={"num_train": 200000}, num_threads=1,
                   logging={"tensorboard": False}, checkpoint={"every_updates": 50})
    for lr in (1e-3, 1e-2):
        launcher(optim={"lr": lr})
"""

# A solver that ignores SIGTERM: only a kill stops it.
STUBBORN_SOLVER = STAND_IN + '''
import signal


class StubbornSolver(StandIn):
    def run(self):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        (self.folder / "ready").write_text("")
        while True:
            time.sleep(0.1)
'''

STUBBORN_GRID = """\
from baton.xp.explore import explorer

@explorer(metrics=[])
def explore(launcher):
    launcher.bind_(solver="stubborn")
    for n in (1, 2):
        launcher(label=f"stubborn{n}")
"""


def _package(project: Path, name: str, grid: str) -> None:
    (project / name).mkdir(parents=True)
    (project / name / "__init__.py").write_text("")
    (project / name / "pair.py").write_text(grid)


@pytest.fixture
def long_grid(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    _package(project, "longgrids", LONG_GRID)
    return project


@pytest.fixture
def stubborn_grid(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    _package(project, "stubborngrids", STUBBORN_GRID)
    (project / "stubborn.py").write_text(STUBBORN_SOLVER)
    (project / "conf" / "solver").mkdir(parents=True)
    (project / "conf" / "solver" / "stubborn.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /solver/default\n  - _self_\nsolver: stubborn.StubbornSolver\n"
    )
    return project


def xp_processes(xp_root: Path) -> dict[int, str]:
    """pid -> command line of every live process running an XP of this XP root (`baton run`,
    and any process it forked), read from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours
            continue
        if "-m baton run -f " in cmdline and f"BATON_XP_DIR={xp_root}".encode() in environ:
            found[int(entry.name)] = cmdline
    return found


@pytest.fixture
def start_grid(clean_env: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start `baton grid` in its own session, as a shell starts a foreground job; afterwards
    kill whatever it or its XPs left running, so a failing test leaves no process behind."""
    started: list[subprocess.Popen[str]] = []

    def start(project: Path, *args: str) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO), "BATON_XP_DIR": str(clean_env)}
        proc = subprocess.Popen([sys.executable, "-m", "baton", "grid", "pair", "-j", "2", *args],
                                cwd=project, env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for pid in xp_processes(clean_env):
        os.kill(pid, signal.SIGKILL)


def wait_until(ready: Callable[[], bool], grid: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 120
    while not ready():
        if grid.poll() is not None:
            raise AssertionError(f"the grid ended before {what}: {grid.communicate()[0][-2000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def xp_pids(xp_root: Path) -> dict[str, int]:
    """sig -> pid of the `baton run` holding each XP's lock."""
    return {xp.sig: int(owner["pid"]) for xp in all_xps(xp_root) if (owner := read_owner(xp.path))}


def training(xp_root: Path) -> bool:
    """Both XPs hold their lock and have checkpointed once: the solver's signal handlers are in."""
    return len(xp_pids(xp_root)) == 2 and len(list(xp_root.glob("xps/*/checkpoint.th"))) == 2


@pytest.mark.parametrize(
    "signum, send",
    [
        (signal.SIGTERM, lambda grid: os.kill(grid.pid, signal.SIGTERM)),
        # Ctrl-C in a terminal: SIGINT to the whole foreground process group.
        (signal.SIGINT, lambda grid: os.killpg(grid.pid, signal.SIGINT)),
    ],
    ids=["sigterm", "ctrl-c"],
)
def test_stop_signal_checkpoints_every_xp_and_leaves_no_orphan(
    long_grid: Path, clean_env: Path, start_grid: Callable[..., subprocess.Popen[str]],
    signum: int, send: Callable[[subprocess.Popen[str]], None],
) -> None:
    grid = start_grid(long_grid, "--package", "longgrids")
    wait_until(lambda: training(clean_env), grid, "both XPs to train")
    pids = xp_pids(clean_env)
    assert set(pids.values()) <= set(xp_processes(clean_env))
    send(grid)
    out, _ = grid.communicate(timeout=120)
    assert grid.returncode == 128 + signum, out[-2000:]
    assert xp_processes(clean_env) == {}, "XP processes outlived the grid"
    for xp in all_xps(clean_env):
        assert st.xp_status(xp) == st.KILLED
        record = json.loads((xp.path / st.EXIT).read_text())
        # Each XP got the signal once: a second SIGINT would have stopped it without a checkpoint.
        assert record["pid"] == pids[xp.sig]
        assert record["message"].startswith(f"stopped by {signal.Signals(signum).name}"), record
        assert (xp.path / "checkpoint.th").is_file()
    assert "`baton grid pair` runs them again" in out


def test_second_signal_kills_the_xps_at_once(
    stubborn_grid: Path, clean_env: Path, start_grid: Callable[..., subprocess.Popen[str]]
) -> None:
    grid = start_grid(stubborn_grid, "--package", "stubborngrids", "--config-dir", "conf")
    wait_until(lambda: len(list(clean_env.glob("xps/*/ready"))) == 2, grid, "both XPs to run")
    os.kill(grid.pid, signal.SIGTERM)
    time.sleep(1.0)
    assert grid.poll() is None  # the XPs ignore SIGTERM: the grid waits for them
    assert len(xp_processes(clean_env)) == 2
    start = time.monotonic()
    os.kill(grid.pid, signal.SIGTERM)
    out, _ = grid.communicate(timeout=30)
    assert grid.returncode == 128 + signal.SIGTERM, out[-2000:]
    assert time.monotonic() - start < 5
    assert "second stop signal: killed 2 running XP(s)" in out
    assert xp_processes(clean_env) == {}
    assert all(st.xp_status(XPFolder(xp.path)) == st.KILLED for xp in all_xps(clean_env))
