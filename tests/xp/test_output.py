"""What the commands print: `info -m` with many metrics, `grid` in a log file, closed pipes,
`grid --help` (each through `python -m baton`, as a user types it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from baton.xp.folder import all_xps
from tests.xp.conftest import QUICK, REPO, baton_cli

STAGES = {
    "train": ["loss", "l1", "mel", "si_snr", "commit", "bandwidth", "grad_norm", "lr"],
    "valid": ["loss", "l1", "mel", "si_snr", "commit", "bandwidth"],
    "evaluate": ["si_snr_8kbps", "mel_8kbps", "si_snr_32kbps", "mel_32kbps", "si_snr_64kbps", "mel_64kbps"],
}


@pytest.fixture
def many_metrics(clean_env: Path) -> str:
    """An XP whose history holds 20 metrics over 3 epochs (a codec's, say); its sig."""
    assert baton_cli("grid", "example", "--init").returncode == 0
    xp = all_xps(clean_env)[0]
    lines = [json.dumps({stage: {name: 1.0 / epoch + i / 7 for i, name in enumerate(names)}
                         for stage, names in STAGES.items()}) for epoch in (1, 2, 3)]
    (xp.path / "history.jsonl").write_text("\n".join(lines) + "\n")
    return xp.sig


def table_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line[:1] in "┏┃┡│└"]


def test_info_metrics_headers_are_whole_however_many_metrics(many_metrics: str) -> None:
    result = baton_cli("info", "-f", many_metrics, "-m")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "…" not in out
    assert all(len(line) <= 160 for line in table_lines(out))  # the width of a non-terminal console
    assert "metrics per epoch (1/2)" in out and "metrics per epoch (2/2)" in out
    headers = [line for line in table_lines(out) if line.startswith("┃")]
    cells = {cell.strip() for line in headers for cell in line.split("┃")}
    assert set(STAGES) <= cells
    assert {name for names in STAGES.values() for name in names} <= cells


def test_info_metrics_picks_columns(many_metrics: str) -> None:
    result = baton_cli("info", many_metrics, "--metrics", "valid.mel,si_snr_*kbps")
    assert result.returncode == 0, result.stderr
    header = [line for line in table_lines(result.stdout) if line.startswith("┃")]
    stages = [cell.strip() for cell in header[0].split("┃")[2:-1]]
    names = [cell.strip() for cell in header[1].split("┃")[2:-1]]
    assert names == ["mel", "si_snr_8kbps", "si_snr_32kbps", "si_snr_64kbps"]
    assert stages == ["valid", "evaluate", "evaluate", "evaluate"]
    # A bare name takes the metric of every stage; `-m SIG` still reads SIG as the XP.
    bare = baton_cli("info", "-m", many_metrics)
    assert bare.returncode == 0 and "metrics per epoch" in bare.stdout
    loss = baton_cli("info", "-f", many_metrics, "--metrics", "loss")
    assert [c.strip() for c in table_lines(loss.stdout)[2].split("┃")[2:-1]] == ["loss", "loss"]


def test_info_unknown_metric_is_one_line_before_any_output(many_metrics: str) -> None:
    result = baton_cli("info", "-f", many_metrics, "--metrics", "valid.mle")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: --metrics: no metric matches 'valid.mle' (did you mean 'valid.mel'?)")
    assert len(result.stderr.splitlines()) == 1


def test_grid_help_shows_examples() -> None:
    result = baton_cli("grid", "--help")
    assert result.returncode == 0
    examples = result.stdout.split("examples:\n", 1)[1]
    for line in ("baton grid example --dry_run", "baton grid example -j 2", "baton grid example -r",
                 "baton grid mygrid --package mypkg.grids --config-dir conf"):
        assert f"  {line}" in examples


def closed_stdout(*args: str) -> tuple[int, str]:
    """`baton ARGS` whose reader is gone before it writes (as `| head` after enough lines)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "baton", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    return proc.wait(timeout=120), err


def test_a_closed_pipe_ends_commands_quietly(many_metrics: str, clean_env: Path, tmp_path: Path) -> None:
    for args in (["ls"], ["info", "-f", many_metrics, "-m"], ["grid", "example", "--dry_run"]):
        assert closed_stdout(*args) == (141, ""), args
    assert baton_cli("run", *QUICK, "optim.epochs=1").returncode == 0
    trained = [xp for xp in all_xps(clean_env) if (xp.path / "checkpoint.th").exists()][0]
    output = tmp_path / "weights.pt"
    assert closed_stdout("export", trained.sig, "-o", str(output)) == (141, "")
    assert output.is_file()  # the work was done; only the words had nowhere to go


@pytest.fixture
def hold_grid(wait_project: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A grid of two WaitSolver XPs: #0 runs until `release` exists, #1 fails; (project, release)."""
    release = tmp_path / "release"
    grids = wait_project / "holdgrids"
    grids.mkdir()
    (grids / "__init__.py").write_text("")
    (grids / "hold.py").write_text(textwrap.dedent(f"""\
        from baton.xp.explore import explorer

        @explorer(metrics=["train.loss"])
        def explore(launcher):
            launcher.bind_(solver="wait")
            launcher(task={{"release": {str(release)!r}}})
            launcher(task={{"fail": True}})
        """))
    return wait_project, release


def test_grid_without_a_terminal_prints_a_line_per_status_change(hold_grid: tuple[Path, Path]) -> None:
    project, release = hold_grid
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "baton", "grid", "hold", "--package", "holdgrids", "--config-dir", "conf", "-j", "2"],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    lines = []
    try:
        deadline = time.monotonic() + 120
        # The line comes while the XP runs, not at the end: the grid waits for `release`.
        while not any(line.startswith("grid hold: #0 ") and line.endswith(" running") for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, (lines, proc.stderr)
            lines.append(proc.stdout.readline().rstrip("\n"))
        release.touch()
        out, _ = proc.communicate(timeout=120)
    finally:
        release.touch()
        if proc.poll() is None:
            proc.kill()
    lines += out.splitlines()
    assert proc.returncode == 1  # #1 failed
    status_lines = [line for line in lines if line.startswith("grid hold: #")]
    held = [line for line in status_lines if line.startswith("grid hold: #0 ")]
    assert [line.split(") ", 1)[1].split(":")[0] for line in held] == ["running", "done"]
    assert held[1].endswith("done: epoch 2, train.loss 0.5")
    (failed,) = [line for line in status_lines if line.startswith("grid hold: #1 ") and " failed" in line]
    assert failed.endswith("RuntimeError: boom")
    assert sum("grid hold: #1 " in line for line in status_lines) <= 2  # running (if seen), failed
    assert sum(line.strip() == "grid hold" for line in lines) == 1  # the table once, at the end
