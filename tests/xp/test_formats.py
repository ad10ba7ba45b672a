"""Tables for other tools (`baton ls --format`, `baton grid --format`) and curves as an image
(`baton info -m --plot`)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

import baton
from tests.xp.conftest import QUICK, baton_cli


@pytest.fixture
def two_xps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("BATON_XP_DIR", str(tmp_path))
    return [baton.run([*QUICK, "optim.epochs=2", f"optim.lr={lr}", "logging.tensorboard=false"]).sig for lr in (1e-3, 3e-3)]


def test_ls_writes_csv_and_markdown(two_xps: list[str], tmp_path: Path) -> None:
    env = {"BATON_XP_DIR": str(tmp_path)}
    result = baton_cli("ls", "--format", "csv", env=env)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {row["sig"] for row in rows} == set(two_xps)
    assert all(row["status"] == "done" and row["epoch"] == "2" for row in rows)
    result = baton_cli("ls", "--format", "markdown", env=env)
    lines = result.stdout.splitlines()
    assert lines[2] == "| sig | delta | status | epoch | best | age | slurm |"
    assert lines[3] == "| --- | --- | --- | ---: | ---: | ---: | --- |"
    assert len(lines) == 6 and all(sig in result.stdout for sig in two_xps)


def test_grid_dry_run_writes_its_table_as_csv(tmp_path: Path) -> None:
    result = baton_cli("grid", "example", "--dry_run", "--format", "csv", env={"BATON_XP_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows and list(rows[0])[:5] == ["#", "name", "state", "sig", "epoch"]
    assert {row["state"] for row in rows} == {"new"}


def test_info_plot_draws_the_curves(two_xps: list[str], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    image = tmp_path / "curves" / "xp.png"
    result = baton_cli("info", "-f", two_xps[0], "-m", "loss,mse", "--plot", str(image), env={"BATON_XP_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "(2 metric(s))" in result.stdout
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.stat().st_size > 10_000



def test_info_metrics_list_stages_in_the_loops_order(two_xps: list[str], tmp_path: Path) -> None:
    # history.jsonl stores stages alphabetically (evaluate, train, valid); tables follow the loop.
    result = baton_cli("info", "-f", two_xps[0], "-m", env={"BATON_XP_DIR": str(tmp_path), "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    stage_row = next(line for line in result.stdout.splitlines() if line.startswith("┃"))  # the stages
    stages = [cell.strip() for cell in stage_row.strip("┃ ").split("┃") if cell.strip()]
    assert list(dict.fromkeys(stages)) == ["train", "valid", "evaluate"], stage_row
