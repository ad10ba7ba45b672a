from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.config.conftest import ENV_VARS, clean_env  # noqa: F401  (autouse: every xp test starts clean)

REPO = Path(__file__).resolve().parents[2]
# Tiny and quick: the example task on a handful of samples.
QUICK = ["solver=example", "task.num_train=64", "task.num_valid=16", "dataset.batch_size=16"]


@pytest.fixture(scope="session")
def quick_xps(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two finished XPs of QUICK (the second with optim.lr=0.01), trained once per session
    through the Python API for the tests that read, damage or resume XPs, not train them:
    each test takes its own copies with `copy_xps`."""
    import baton

    root = tmp_path_factory.mktemp("quick_xps")
    with pytest.MonkeyPatch.context() as patch:
        for name in ENV_VARS:
            patch.delenv(name, raising=False)
        patch.setenv("BATON_XP_DIR", str(root))
        return [baton.run(QUICK).folder, baton.run([*QUICK, "optim.lr=0.01"]).folder]


def copy_xps(folders: list[Path], xp_root: Path) -> list[Path]:
    """Copies of finished XP folders into `xp_root`, where `baton` finds them by signature."""
    return [Path(shutil.copytree(folder, xp_root / "xps" / folder.name)) for folder in folders]


def baton_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, **kwargs):
    """`python -m baton ARGS` in a subprocess, as a user would type it."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "baton", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


# What a launcher asks of a solver class (baton.xp.launch), and nothing more: stand-in solvers
# of the experiment manager's tests subclass it.
STAND_IN = '''
import json
import time
from pathlib import Path


class StandIn:
    def __init__(self, cfg):
        self.cfg = cfg
        self.folder = Path(cfg.xp.folder)
        self.finished = False

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass
'''

# One history line per epoch, and optionally waiting for a file before finishing, so a test
# controls how long it runs.
WAIT_SOLVER = STAND_IN + '''


class WaitSolver(StandIn):
    def run(self):
        history = self.folder / "history.jsonl"
        done = len(history.read_text().splitlines()) if history.exists() else 0
        for epoch in range(done + 1, self.cfg.optim.epochs + 1):
            with open(history, "a") as f:
                f.write(json.dumps({"train": {"loss": 1.0 / epoch}}) + "\\n")
        release = self.cfg.task.release
        while release and not Path(release).exists():
            time.sleep(0.05)
        if self.cfg.task.fail:
            raise RuntimeError("boom")
        self.finished = True
'''


@pytest.fixture
def wait_project(tmp_path: Path) -> Path:
    """A project folder with the WaitSolver and its config; run baton from inside it."""
    project = tmp_path / "wait_project"
    (project / "conf" / "solver").mkdir(parents=True)
    (project / "waitsolver.py").write_text(WAIT_SOLVER)
    (project / "conf" / "solver" / "wait.yaml").write_text(
        textwrap.dedent(
            """\
            # @package _global_
            defaults:
              - /solver/default
              - _self_
            solver: waitsolver.WaitSolver
            optim:
              epochs: 2
            task:
              release: null
              fail: false
            """
        )
    )
    return project
