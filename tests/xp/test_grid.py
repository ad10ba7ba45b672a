"""`baton grid`: dry runs that make every sig runnable, clear, retry, and a real local run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from baton.__main__ import main
from baton.config import compose_xp
from baton.xp import status as st
from baton.xp.folder import XPFolder, all_xps
from tests.xp.conftest import REPO, baton_cli


def test_dry_run_shows_sigs_that_run_f_accepts(clean_env: Path, capsys: pytest.CaptureFixture):
    assert main(["grid", "example", "--dry_run"]) == 0
    out = capsys.readouterr().out
    expected = [compose_xp(["solver=example", f"optim.lr={lr}"]).sig for lr in (1e-3, 3e-3, 1e-2)]
    for sig in expected:
        assert sig in out
    assert sorted(xp.sig for xp in all_xps(clean_env)) == sorted(expected)
    assert all(st.xp_status(xp) == st.NEW for xp in all_xps(clean_env))
    assert main(["run", "-f", expected[0], "--dry_run"]) == 0
    assert f"sig:    {expected[0]}" in capsys.readouterr().out


def test_unknown_grid_is_one_line_exit_2(clean_env: Path, capsys: pytest.CaptureFixture):
    assert main(["grid", "exampel"]) == 2
    assert "unknown grid 'exampel' (did you mean 'example'?)" in capsys.readouterr().err
    assert not clean_env.exists()


def test_clear_asks_first(clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    assert main(["grid", "example", "--init"]) == 0
    marker = all_xps(clean_env)[0].path / "history.jsonl"
    marker.write_text('{"train": {"loss": 1.0}}\n')
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(["grid", "example", "--clear", "--dry_run"]) == 2
    assert "--clear cancelled; nothing deleted" in capsys.readouterr().err
    assert marker.exists()
    assert main(["grid", "example", "--clear", "-y", "--dry_run"]) == 0
    assert not marker.exists()
    assert len(all_xps(clean_env)) == 3  # cleared, then declared again


def write_grid(project: Path, package: str, name: str, body: str) -> None:
    """`project/package/name.py`: a grid of WaitSolver XPs whose explorer runs `body`."""
    grids = project / package
    grids.mkdir(exist_ok=True)
    (grids / "__init__.py").write_text("")
    head = 'from baton.xp.explore import explorer\n\n@explorer(metrics=["train.loss"])\ndef explore(launcher):\n'
    (grids / f"{name}.py").write_text(head + textwrap.indent('launcher.bind_(solver="wait")\n' + textwrap.dedent(body), "    "))


@pytest.fixture
def wait_grid(wait_project: Path) -> Path:
    write_grid(wait_project, "waitgrids", "pair", """\
        launcher(task={"fail": False})
        launcher({"task.fail": True})
        """)
    return wait_project


@pytest.mark.slow
def test_grid_runs_locally_and_retries_failed(wait_grid: Path, clean_env: Path):
    args = ["grid", "pair", "--package", "waitgrids", "--config-dir", "conf", "-j", "2"]
    first = baton_cli(*args, cwd=wait_grid)
    assert first.returncode == 1, first.stderr
    by_status = {st.xp_status(xp): xp for xp in all_xps(clean_env)}
    assert set(by_status) == {st.DONE, st.FAILED}
    failed: XPFolder = by_status[st.FAILED]
    assert "RuntimeError: boom" in (failed.path / "launcher.log").read_text()
    assert f"XP {failed.sig} failed" in first.stdout
    # Without -r nothing is launched again; with -r the failed one is.
    again = baton_cli(*args, cwd=wait_grid)
    assert again.returncode == 0 and "1 failed XP(s)" in again.stdout
    assert (failed.path / "launcher.log").read_text().count("=== ") == 1
    retry = baton_cli(*args, "-r", cwd=wait_grid)
    assert retry.returncode == 1
    assert (failed.path / "launcher.log").read_text().count("=== ") == 2
    assert "done" in retry.stdout and "failed" in retry.stdout


def test_an_xp_referring_to_a_failed_one_is_not_started(wait_project: Path, clean_env: Path):
    """`-j 2`, and the second XP names the first by `//sig/`: it waits for it, and when the
    first fails it is never started (its folder stays new) and the grid says why."""
    write_grid(wait_project, "chaingrids", "chain", """\
        first = launcher(task={"fail": True})
        launcher({"+task.after": f"//sig/{first.sig}"})
        """)
    result = baton_cli("grid", "chain", "--package", "chaingrids", "--config-dir", "conf", "-j", "2", cwd=wait_project)
    assert result.returncode == 1
    by_status = {st.xp_status(xp): xp for xp in all_xps(clean_env)}
    assert set(by_status) == {st.FAILED, st.NEW}
    failed, waiting = by_status[st.FAILED], by_status[st.NEW]
    assert f"XP {waiting.sig} not started: it refers to XP {failed.sig}, which did not finish" in result.stdout
    assert not (waiting.path / "launcher.log").exists()


def test_clear_checks_every_xp_before_deleting_any(wait_project: Path, clean_env: Path, tmp_path: Path):
    release = tmp_path / "release"
    grids = wait_project / "holdgrids"
    grids.mkdir()
    (grids / "__init__.py").write_text("")
    (grids / "hold.py").write_text(
        textwrap.dedent(
            f"""\
            from baton.xp.explore import explorer

            @explorer(metrics=["train.loss"])
            def explore(launcher):
                launcher.bind_(solver="wait")
                launcher()                                  # XP 0: idle
                launcher(task={{"release": {str(release)!r}}})  # XP 1: runs until released
            """
        )
    )
    args = ["grid", "hold", "--package", "holdgrids", "--config-dir", "conf"]
    assert baton_cli(*args, "--init", cwd=wait_project).returncode == 0
    (busy,) = [xp for xp in all_xps(clean_env) if any("release" in a for a in xp.argv())]
    (idle,) = [xp for xp in all_xps(clean_env) if xp.sig != busy.sig]
    marker = idle.path / "history.jsonl"
    marker.write_text('{"train": {"loss": 1.0}}\n')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    running = subprocess.Popen([sys.executable, "-m", "baton", "run", "-f", busy.sig, "--config-dir", "conf"],
                               cwd=wait_project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while st.xp_status(busy) != st.RUNNING:
            assert running.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        refused = baton_cli(*args, "--clear", "-y", "--dry_run", cwd=wait_project)
        assert refused.returncode == 2
        assert marker.exists(), "XP 0 was deleted before XP 1 was found running"
        assert refused.stderr.startswith("error: grid hold --clear: nothing deleted, ")
        assert f"XP {busy.sig} is already running (pid {running.pid} " in refused.stderr
        assert len(refused.stderr.splitlines()) == 1
    finally:
        release.touch()
        assert running.wait(timeout=60) == 0
    cleared = baton_cli(*args, "--clear", "-y", "--dry_run", cwd=wait_project)
    assert cleared.returncode == 0, cleared.stderr
    assert not marker.exists()
