"""A checkpoint must belong to its XP and its solver: one written by a solver run by hand, or by
another solver class, or one that does not fit the model, is refused on one line by `baton run`
and `baton export` (no crash in load_state_dict, no foreign weights exported)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import baton
from baton.errors import CheckpointError
from baton.tasks.example import ExampleSolver
from baton.xp import status as st
from baton.xp.folder import XPFolder
from tests.helpers import example_config
from tests.xp.conftest import QUICK, baton_cli

ONE_EPOCH = ["optim.epochs=1", "logging.tensorboard=false", "task.num_train=64", "task.num_valid=16"]


def by_hand(folder: Path, *overrides: str) -> None:
    """Train a solver built by hand (no XP, no signature) into `folder`."""
    with ExampleSolver(example_config(folder, *ONE_EPOCH, *overrides)) as solver:
        solver.run()


def test_a_checkpoint_without_the_xps_sig_is_refused_by_run_and_export(clean_env: Path, tmp_path: Path) -> None:
    assert baton.run(QUICK).status == "done"  # in this process: the CLI is what comes next
    (folder,) = clean_env.glob("xps/*")
    st.write_exit(XPFolder(folder), st.KILLED, "stopped by SIGTERM during epoch 1")  # to resume
    by_hand(tmp_path / "other", "task.hidden=8")
    for kept in folder.glob("checkpoint*.th"):
        kept.unlink()
    shutil.copy(tmp_path / "other" / "checkpoint.th", folder / "checkpoint.th")

    run = baton_cli("run", *QUICK)
    assert run.returncode == 2
    (line,) = run.stderr.strip().splitlines()
    assert "belongs to no XP (a solver run by hand?), not " + folder.name in line and "--clear" in line
    export = baton_cli("export", folder.name, "-o", str(tmp_path / "model.pt"))
    assert export.returncode == 2 and "belongs to no XP" in export.stderr
    assert not (tmp_path / "model.pt").exists()


def test_a_checkpoint_of_another_solver_class_is_refused(tmp_path: Path) -> None:
    class Other(ExampleSolver):
        pass

    by_hand(tmp_path)
    with pytest.raises(CheckpointError, match="was written by solver baton.tasks.example.ExampleSolver, not "):
        Other(example_config(tmp_path, *ONE_EPOCH)).run()


def test_a_checkpoint_that_does_not_fit_the_model_is_one_line(tmp_path: Path) -> None:
    by_hand(tmp_path, "task.hidden=8")
    with pytest.raises(CheckpointError, match=r"does not fit this solver \(Error\(s\) in loading state_dict"):
        ExampleSolver(example_config(tmp_path, *ONE_EPOCH, "task.hidden=16")).run()
