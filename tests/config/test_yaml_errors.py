"""A config or team file that is not valid YAML: one line naming the file and line, exit 2."""

from __future__ import annotations

from pathlib import Path

from tests.config.conftest import write
from tests.xp.conftest import baton_cli


def test_broken_user_config_file(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    write(folder / "solver" / "broken.yaml",
          "# @package _global_\ndefaults:\n  - /solver/example\n  - _self_\noptim: {lr: [1, 2\n")
    result = baton_cli("run", "--config-dir", str(folder), "solver=broken")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: invalid YAML in {folder / 'solver' / 'broken.yaml'} line 6: "
        "expected ',' or ']', but got '<stream end>'; fix the file"
    ]


def test_broken_team_file(tmp_path: Path) -> None:
    team = write(tmp_path / "team.yaml", "clusters: [a\n")
    result = baton_cli("run", "solver=example", "--dry_run", env={"BATON_CONFIG": str(team)})
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: invalid YAML in {team} line 2: expected ',' or ']', but got '<stream end>'; fix the file"
