"""`baton new NAME`: a project that runs, grids and tests at once, with no BATON_* variables."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from baton.__main__ import main
from baton.config import compose_xp
from baton.config.project import load_project
from baton.xp.folder import all_xps
from tests.xp.conftest import REPO

TASK_FILES = ["mytask.py", "conf/solver/mytask.yaml", "grids/mytask.py", "tests/test_mytask.py"]
SHARED_FILES = ["baton.toml", "grids/__init__.py", "tests/conftest.py"]


@pytest.fixture(autouse=True)
def restore_sys_path(monkeypatch: pytest.MonkeyPatch):
    """`main` puts the working directory on sys.path, and composing inside a project puts its
    folder there: undo both after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def new(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["new", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_new_writes_a_project_that_composes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]):
    monkeypatch.chdir(tmp_path)
    code, out, _ = new("mytask", capsys=capsys)
    assert code == 0
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(TASK_FILES + SHARED_FILES)
    assert all(name in out for name in written) and "baton run solver=mytask" in out

    yaml = (tmp_path / "conf/solver/mytask.yaml").read_text().splitlines()
    assert yaml[0] == "# @package _global_"
    assert yaml[yaml.index("defaults:") + 1:yaml.index("defaults:") + 3] == ["  - /solver/default", "  - _self_"]
    project = load_project(tmp_path / "baton.toml")
    assert project.config_dirs == (tmp_path / "conf",)
    assert project.grid_packages == ("grids",) and project.imports == ("mytask",)
    for path in tmp_path.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    assert "class MytaskSolver(StandardSolver)" in (tmp_path / "mytask.py").read_text()

    monkeypatch.delenv("BATON_XP_DIR")
    xp = compose_xp(["solver=mytask"])  # no --config-dir, no BATON_CONFIG_PATH: baton.toml
    assert xp.folder == tmp_path / "outputs" / "xps" / xp.sig
    assert list(xp.cfg.imports) == ["mytask"]


def test_new_in_another_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.chdir(tmp_path)
    code, out, _ = new("my_task", "--dir", "proj/inner", capsys=capsys)
    assert code == 0 and "cd proj/inner" in out
    assert "class MyTaskSolver(" in (tmp_path / "proj/inner/my_task.py").read_text()
    assert not (tmp_path / "baton.toml").exists()


def test_new_refuses_to_overwrite_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mytask.py").write_text("mine\n")
    (tmp_path / "grids").mkdir()
    (tmp_path / "grids" / "__init__.py").write_text("")
    code, _, err = new("mytask", capsys=capsys)
    assert code == 2
    assert err == (f"error: baton new mytask: not overwriting mytask.py, grids/__init__.py in {tmp_path}; "
                   "remove them, pick another name, or use --dir DIR\n")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["__init__.py", "grids", "mytask.py"]
    assert (tmp_path / "mytask.py").read_text() == "mine\n"


@pytest.mark.parametrize(
    "name, message",
    [
        ("my-task", "'my-task' is not a valid Python identifier"),
        ("1task", "'1task' is not a valid Python identifier"),
        ("class", "'class' is not a valid Python identifier"),
        ("example", "'example' is the name of one of baton's own solvers"),
        ("json", "'json' is the name of an installed module (the standard library)"),
        ("torch", "'torch' is the name of an installed module ("),
        ("grids", "'grids' is a folder or file of the project itself"),
    ],
)
def test_new_refuses_a_bad_name_in_one_line(name: str, message: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.chdir(tmp_path)
    code, _, err = new(name, capsys=capsys)
    assert code == 2 and err.startswith(f"error: {message}")
    assert err.count("\n") == 1 and not list(tmp_path.iterdir())


def test_a_folder_named_like_the_task_does_not_count_as_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]):
    monkeypatch.chdir(tmp_path)
    code, _, err = new("mytask", "--dir", "mytask", capsys=capsys)
    assert code == 0, err  # ./mytask/ is a namespace package


def test_a_second_task_keeps_the_project_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]):
    monkeypatch.chdir(tmp_path)
    assert new("mytask", capsys=capsys)[0] == 0
    before = {name: (tmp_path / name).read_text() for name in SHARED_FILES}
    code, out, _ = new("other", capsys=capsys)
    assert code == 0 and "baton.toml" not in out
    assert {name: (tmp_path / name).read_text() for name in SHARED_FILES} == before
    assert "imports: [other]" in (tmp_path / "conf/solver/other.yaml").read_text()
    assert "imports:" not in (tmp_path / "conf/solver/mytask.yaml").read_text()
    assert list(compose_xp(["solver=other"]).cfg.imports) == ["other", "mytask"]

    (tmp_path / "baton.toml").write_text('imports = ["mytask"]\n')
    code, _, err = new("third", capsys=capsys)
    assert code == 2 and "does not list config_dirs" in err


def _clean_env() -> dict[str, str]:
    """The user's environment without any BATON_* variable (and without the test's XP root)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@pytest.mark.slow
def test_new_project_runs_grids_and_tests_with_no_environment_variables(tmp_path: Path):
    """Real processes, as a user types them: baton new, run, grid, ls from a subfolder, pytest."""
    script = shutil.which("baton", path=str(Path(sys.executable).parent))
    baton_cmd = [script] if script else [sys.executable, "-m", "baton"]
    env = _clean_env()
    project = tmp_path / "proj"
    project.mkdir()

    def run(*args: str, cwd: Path = project, command: list[str] = baton_cmd) -> str:
        result = subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    run("new", "mytask")
    out = run("run", "solver=mytask")
    (xp,) = all_xps(project / "outputs")  # ./outputs of the project: the default XP root
    assert f"XP {xp.sig} done" in out and len(xp.history()) == 4
    assert xp.history()[-1]["train"]["loss"] < xp.history()[0]["train"]["loss"]
    assert sorted(p.name for p in (xp.path / "samples" / "4").iterdir())[:3] == ["0_clean.wav", "0_denoised.wav", "0_noisy.wav"]

    assert "optim.lr=0.001" in run("grid", "mytask", "--dry_run")
    run("grid", "mytask")  # runs the XP that is new; the other is `baton run solver=mytask`'s
    xps = all_xps(project / "outputs")
    assert len(xps) == 2
    sub = project / "notebooks"
    sub.mkdir()
    listing = run("ls", cwd=sub)
    assert all(x.sig in listing for x in xps) and listing.count("done") == 2
    assert "delta:  optim.lr=0.01 solver=mytask" in run("run", "--dry_run", "solver=mytask", "optim.lr=0.01", cwd=sub)

    # The scaffolded test: as the instructions say, and from outside the project.
    run("-m", "pytest", "tests", "-q", "-p", "no:cacheprovider", command=[sys.executable])
    pytest_script = shutil.which("pytest", path=str(Path(sys.executable).parent))
    if pytest_script:
        run(str(project / "tests"), "-q", "-p", "no:cacheprovider", cwd=tmp_path, command=[pytest_script])
    assert not list(tmp_path.glob("outputs")) and not (sub / "outputs").exists()
