"""The `baton` command runs code from baton and its libraries, never a stray file in the working
directory, while a project's own modules there stay importable (see tests/xp/test_user_project.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from baton.__main__ import working_directory_last
from tests.xp.conftest import REPO

# Modules every command imports (rich prints, omegaconf composes): a file of the same name in
# the working directory would run instead, with the user's rights, if the directory came first.
SHADOWS = ("rich", "omegaconf")


@pytest.fixture
def trap(tmp_path: Path) -> Path:
    """A working directory holding rich.py and omegaconf.py that leave a marker when imported."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    for name in SHADOWS:
        (folder / f"{name}.py").write_text(
            f"import pathlib\npathlib.Path({str(tmp_path / ('imported_' + name))!r}).write_text('')\n"
        )
    return folder


def entry_points() -> dict[str, list[str]]:
    """The two ways a user starts baton: the console script and `python -m baton`."""
    script = shutil.which("baton", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the `baton` console script is not installed next to this python")
    return {"script": [script], "module": [sys.executable, "-m", "baton"]}


def test_files_in_the_working_directory_never_shadow_a_library(trap: Path, tmp_path: Path):
    env = {**os.environ, "BATON_XP_DIR": str(tmp_path / "xps"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    quick = ["solver=example", "task.num_train=16", "task.num_valid=8", "dataset.batch_size=8", "optim.epochs=1"]

    def baton(how: list[str], *args: str) -> str:
        result = subprocess.run([*how, *args], cwd=trap, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    for how in entry_points().values():
        baton(how, "run", *quick)
        sig = baton(how, "run", "--dry_run", *quick).split()[1]
        assert sig in baton(how, "ls")
        assert sig in baton(how, "info", "-f", sig, "-m")
        assert sorted(p.name for p in tmp_path.glob("imported_*")) == []


def test_the_working_directory_moves_to_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    path = ["", str(tmp_path), "/lib/python3.x", ".", "/site-packages"]
    working_directory_last(path)
    assert path == ["/lib/python3.x", "/site-packages", str(tmp_path)]
    working_directory_last(path)  # a second call changes nothing
    assert path == ["/lib/python3.x", "/site-packages", str(tmp_path)]


def test_an_optional_package_never_comes_from_the_working_directory(tmp_path: Path):
    """A planted `torchaudio.py` / `speechbrain.py` (packages baton does without, not installed
    here) is not found by a probe, while a project's own module there still imports."""
    folder = tmp_path / "project"
    folder.mkdir()
    for name in ("torchaudio", "speechbrain"):
        (folder / f"{name}.py").write_text(f"import pathlib\npathlib.Path({str(tmp_path / ('imported_' + name))!r}).write_text('')\n")
    (folder / "mytask.py").write_text("VALUE = 42\n")
    probe = (
        "import importlib.util, sys\n"
        "from baton.import_paths import working_directory_last\n"
        "working_directory_last(sys.path)\n"
        "assert importlib.util.find_spec('torchaudio') is None\n"
        "try:\n    import speechbrain\nexcept ImportError:\n    pass\nelse:\n    raise SystemExit('imported')\n"
        "import mytask\nprint(mytask.VALUE)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", probe], cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "42", result.stderr
    assert sorted(p.name for p in tmp_path.glob("imported_*")) == []
