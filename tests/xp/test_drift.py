"""Config drift: editing a default in a user's solver YAML keeps the XP's signature but changes
the run; baton refuses to resume it on one line, and --clear, a label or
--accept-config-change are the ways on."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.xp.conftest import baton_cli

ARGS = ["solver=mine", "task.num_train=64", "task.num_valid=16", "dataset.batch_size=16", "optim.epochs=1",
        "logging.tensorboard=false"]


def solver_yaml(project: Path, lr: float) -> None:
    (project / "conf" / "solver").mkdir(parents=True, exist_ok=True)
    (project / "conf" / "solver" / "mine.yaml").write_text(textwrap.dedent(f"""\
        # @package _global_
        defaults:
          - /solver/example
          - _self_
        optim:
          lr: {lr}
        """))


def run(project: Path, *extra: str):  # type: ignore[no-untyped-def]
    return baton_cli("run", "--config-dir", str(project / "conf"), *ARGS, *extra)


def test_an_edited_default_is_refused_then_cleared_labelled_or_accepted(clean_env: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    solver_yaml(project, lr=0.01)
    assert run(project).returncode == 0
    (folder,) = clean_env.glob("xps/*")
    assert run(project).returncode == 0  # the same config: done, nothing to refuse

    solver_yaml(project, lr=0.02)
    refused = run(project)
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert f"XP {folder.name} ran with another config: optim.lr 0.01 -> 0.02" in line
    assert "--clear" in line and "label=" in line and "--accept-config-change" in line
    assert "lr: 0.01" in (folder / "config.yaml").read_text()  # nothing rewritten

    labelled = run(project, "label=wider")
    assert labelled.returncode == 0 and len(list(clean_env.glob("xps/*"))) == 2

    accepted = run(project, "--accept-config-change")
    assert accepted.returncode == 0, accepted.stderr
    (record,) = (folder / "config_changes.jsonl").read_text().splitlines()
    assert json.loads(record)["changes"] == [{"key": "optim.lr", "old": 0.01, "new": 0.02}]
    assert "lr: 0.02" in (folder / "config.yaml").read_text()
    assert run(project).returncode == 0  # the accepted config is the XP's config now

    solver_yaml(project, lr=0.03)
    assert run(project).returncode == 2
    assert run(project, "--clear").returncode == 0
    assert "lr: 0.03" in (folder / "config.yaml").read_text()


def test_excluded_keys_are_no_drift(clean_env: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    solver_yaml(project, lr=0.01)
    assert run(project).returncode == 0
    again = run(project, "num_threads=1", "logging.log_every=7", "dataset.num_workers=0")
    assert again.returncode == 0, again.stderr


def test_a_key_added_with_a_null_default_is_no_change() -> None:
    """An XP that ran before baton had `continue_from` resumes under a baton that has it at null."""
    from baton.xp.drift import changes

    assert changes({"optim.lr": 0.1}, {"optim.lr": 0.1, "continue_from": None}) == []
    assert changes({"optim.lr": 0.1}, {"optim.lr": 0.1, "continue_from": "//sig/ab"}) == [
        ("continue_from", "<absent>", "//sig/ab")]
    assert changes({"continue_from": None}, {}) == [("continue_from", None, "<absent>")]
