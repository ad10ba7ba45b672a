"""`baton.run(...)` in a notebook does what `baton run` does: the XP is listed by `baton ls`, and
`info`, `run -f` and `export` work on it. A solver class defined again (a notebook cell run twice)
replaces its registration quietly; another class under a taken name is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

import baton
from baton.solver import StandardSolver, register_solver
from baton.solver.registry import get_solver_class
from tests.xp.conftest import QUICK, baton_cli


def test_an_xp_run_from_python_is_a_full_xp(clean_env: Path, tmp_path: Path) -> None:
    result = baton.run([*QUICK, "optim.epochs=2"])
    assert result.status == "done" and len(result.history) == 2
    assert result.folder == clean_env / "xps" / result.sig
    listing = baton_cli("ls")
    assert result.sig in listing.stdout and "done" in listing.stdout
    info = baton_cli("info", "-f", result.sig)
    assert info.returncode == 0 and "done" in info.stdout
    more = baton_cli("run", "-f", result.sig, "optim.epochs=3")
    assert more.returncode == 0, more.stderr
    exported = baton_cli("export", result.sig, "-o", str(tmp_path / "model.pt"))
    assert exported.returncode == 0 and (tmp_path / "model.pt").exists()
    again = baton.run([*QUICK, "optim.epochs=2"])  # the same XP: nothing left to do
    assert again.sig == result.sig and again.history == result.history


def test_registering_the_same_class_again_replaces_it() -> None:
    def define() -> type:
        @register_solver("notebook_cell")
        class Cell(StandardSolver):
            pass

        return Cell

    first, second = define(), define()  # the cell, run twice
    assert first is not second and get_solver_class("notebook_cell") is second

    class Other(StandardSolver):
        pass

    with pytest.raises(ValueError, match="solver name 'notebook_cell' is taken by .*Cell; pick another name"):
        register_solver("notebook_cell")(Other)
