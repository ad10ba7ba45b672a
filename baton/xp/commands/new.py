"""`baton new NAME`: scaffold a project (or one more task in it) in the current folder.

Writes a solver module, its YAML file, a grid, a test and a project file (`baton.toml`), so
`baton run solver=NAME`, `baton grid NAME` and `pytest tests` work there at once, with no
environment variables. Existing files are never overwritten (see `baton.xp.scaffold`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the task's name, a Python identifier: its module, solver and grid name")
    parser.add_argument("--dir", default=".", metavar="DIR", help="the project folder (default: the current one; created if missing)")


def main(args: argparse.Namespace) -> int:
    from baton.xp.scaffold import plan, write

    folder = Path(args.dir).expanduser().absolute()
    files = plan(args.name, folder)
    write(files)
    name = args.name
    notes = {
        "baton.toml": "the project file: config folders, grid package, imports",
        f"{name}.py": "the solver: data, model, loss, metrics, samples",
        f"conf/solver/{name}.yaml": "its settings",
        "grids/__init__.py": "the project's grid package",
        f"grids/{name}.py": "a learning-rate sweep",
        "tests/conftest.py": "makes the project importable in its tests",
        f"tests/test_{name}.py": "trains it briefly and checks that the loss falls",
    }
    written = [path.relative_to(folder).as_posix() for path in files]
    width = max(len(relative) for relative in written)
    print(f"baton new: task {name} in {folder}")
    for relative in written:
        print(f"  {relative:<{width}}  {notes.get(relative, '')}".rstrip())
    here = folder == Path.cwd().absolute()
    print("next:")
    if not here:
        print(f"  cd {os.path.relpath(folder)}")
    print(f"  baton run solver={name}      # seconds on a CPU; XPs go to outputs/xps/<sig>/")
    print(f"  baton grid {name} -j 2       # the sweep in grids/{name}.py")
    print("  python -m pytest tests")
    return 0
