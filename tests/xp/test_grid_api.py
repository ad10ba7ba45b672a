"""Grids from Python (`baton.xp.grid.Grid`): what `baton grid NAME` does, without the CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from baton.config import compose_xp
from baton.xp import status as st
from baton.xp.grid import Grid
from tests.xp.test_grid import write_grid


def test_a_grid_is_composed_placed_and_tabled_from_python(clean_env: Path) -> None:
    grid = Grid.load("example")
    expected = [compose_xp(["solver=example", f"optim.lr={lr}"]).sig for lr in (1e-3, 3e-3, 1e-2)]
    assert [folder.sig for folder in grid.folders] == expected
    assert grid.names == ["optim.lr=0.001", "(base)", "optim.lr=0.01"]  # 3e-3 is the default
    assert set(grid.statuses().values()) == {st.NEW} and grid.pending() == expected
    table = grid.table("markdown")
    assert all(sig in table for sig in expected) and "valid.loss" in table
    (grid.folders[0].path / "history.jsonl").write_text('{"train": {"loss": 1.0}}\n')
    again = Grid.load("example", clear=True, assume_yes=True)
    assert not (again.folders[0].path / "history.jsonl").exists()


def test_a_grid_runs_from_python_and_reports_each_xp(wait_project: Path, clean_env: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    write_grid(wait_project, "pygrids", "pair", """\
        launcher(task={"fail": False})
        launcher({"task.fail": True})
        """)
    monkeypatch.chdir(wait_project)
    monkeypatch.syspath_prepend(str(wait_project))
    monkeypatch.setenv("PYTHONPATH", str(wait_project) + ":" + str(Path(__file__).resolve().parents[2]))
    grid = Grid.load("pair", ["pygrids"], ["conf"])
    messages: list[str] = []
    outcome = grid.run(jobs=2, notify=messages.append)
    assert outcome.stopped is None and sorted(outcome.statuses.values()) == [st.DONE, st.FAILED]
    assert outcome.launched == [folder.sig for folder in grid.folders]
    assert messages[0] == "running 2 of 2 XPs, 2 at a time"
    assert grid.pending() == [] and len(grid.pending(retry=True)) == 1
    sys.modules.pop("pygrids", None)
    sys.modules.pop("pygrids.pair", None)
