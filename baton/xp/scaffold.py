"""`baton new NAME`: the files of a new project, and the checks before any is written.

A project is a folder with a `baton.toml` (see `baton.config.project`), a solver module, its
YAML file, a grid and a test. The solver is a small but real audio task (white noise removed
from short tones by a 1-D conv net, data made in memory) that trains in seconds on a CPU, so
`baton run solver=NAME`, `baton grid NAME` and `pytest tests` work at once and the user edits a
working task rather than a blank page.

Nothing is overwritten: every file to write must be new. In a folder that already holds a
`baton.toml` (a second task in one project), the project's shared files (`baton.toml`,
`grids/__init__.py`, `tests/conftest.py`) are kept as they are.
"""

from __future__ import annotations

import importlib.machinery
import importlib.resources
import keyword
import os
import re
import sys
from pathlib import Path

from baton.config.project import PROJECT_FILE, Project, load_project
from baton.errors import UserError

# Names a task cannot take: they are folders or special files of the project itself.
RESERVED = ("grids", "tests", "conftest", "conf", "outputs")


def class_name(name: str) -> str:
    """'my_task' -> 'MyTaskSolver'."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_")) + "Solver"


def check_name(name: str) -> None:
    """Refuse a NAME that cannot be a module, a solver name and a config option at once.

    Raises:
        UserError: not an identifier, a Python keyword, reserved, taken by baton, or the name
            of an installed module (which would be imported instead of the project's).
    """
    if not (name.isidentifier() and name.isascii()) or keyword.iskeyword(name):
        raise UserError(
            f"'{name}' is not a valid Python identifier: a task name is a module name, so use "
            "letters, digits and _ and do not start with a digit (e.g. my_task)"
        )
    if name in RESERVED:
        raise UserError(f"'{name}' is a folder or file of the project itself; pick another name")
    taken = _baton_solver_names()
    if name in taken:
        raise UserError(f"'{name}' is the name of one of baton's own solvers ({', '.join(sorted(taken))}); pick another name")
    where = installed_module(name)
    if where is not None:
        raise UserError(
            f"'{name}' is the name of an installed module ({where}): it would be imported "
            f"instead of the project's {name}.py; pick another name"
        )


def installed_module(name: str) -> str | None:
    """Where a top-level module `name` is found outside the working directory: the standard
    library, a built-in, or a file in site-packages; None when it is free (a bare folder of
    that name, a namespace package, does not count)."""
    if name in sys.builtin_module_names or name in getattr(sys, "stdlib_module_names", ()):
        return "the standard library"
    cwd = os.getcwd()

    def elsewhere(entry: str) -> bool:
        try:
            return os.path.abspath(entry or ".") != cwd
        except (OSError, ValueError):
            return False

    spec = importlib.machinery.PathFinder.find_spec(name, [p for p in sys.path if elsewhere(p)])
    if spec is None or spec.origin in (None, "namespace"):
        return None
    return str(spec.origin)


def _baton_solver_names() -> set[str]:
    from baton.config.search import BATON_CONF, group_options
    from baton.solver.registry import solver_names

    options = {option.split("/")[0] for option in group_options("solver", [BATON_CONF])}
    return options | set(solver_names())


def plan(name: str, folder: Path) -> dict[Path, str]:
    """Every file `baton new NAME` writes in `folder`, with its text, checked: none exists.

    Raises:
        UserError: a bad NAME, an existing file (all of them named), or an existing project
            file that does not list `conf` and `grids`, where this task's files go.
    """
    check_name(name)
    folder = folder.absolute()
    project_file = folder / PROJECT_FILE
    project = load_project(project_file) if project_file.is_file() else None
    if project is not None:
        _check_layout(project)
    values = {"__NAME__": name, "__CLASS__": class_name(name)}
    imports = "" if project is None or name in project.imports else f"imports: [{name}]\n"
    files = {
        PROJECT_FILE: template("project.toml"),
        f"{name}.py": template("task.py"),
        f"conf/solver/{name}.yaml": template("task.yaml").replace("__IMPORTS__\n", imports),
        "grids/__init__.py": template("grids_init.py"),
        f"grids/{name}.py": template("grid.py"),
        "tests/conftest.py": template("tests_conftest.py"),
        f"tests/test_{name}.py": template("check_task.py"),
    }
    if project is not None:  # one more task in a project: its shared files stay as they are
        shared = (PROJECT_FILE, "grids/__init__.py", "tests/conftest.py")
        files = {k: v for k, v in files.items() if k not in shared or not (folder / k).exists()}
    existing = [relative for relative in files if (folder / relative).exists() or (folder / relative).is_symlink()]
    if existing:
        raise UserError(
            f"baton new {name}: not overwriting {', '.join(existing)} in {folder}; "
            "remove them, pick another name, or use --dir DIR"
        )
    return {folder / relative: _fill(text, values) for relative, text in files.items()}


def template(name: str) -> str:
    """The text of template file `name` (baton/xp/templates/)."""
    return (importlib.resources.files("baton.xp") / "templates" / name).read_text(encoding="utf-8")


def _check_layout(project: Project) -> None:
    conf, grids = project.root / "conf", "grids"
    if conf.resolve() not in [d.resolve() for d in project.config_dirs] or grids not in project.grid_packages:
        raise UserError(
            f"the project file {project.file} does not list config_dirs = [\"conf\", ...] and "
            f"grid_package = \"grids\", where baton new writes; add them, or use --dir DIR"
        )


def _fill(text: str, values: dict[str, str]) -> str:
    """Replace the placeholders in one pass (a NAME never reads as a placeholder)."""
    return re.sub("|".join(map(re.escape, values)), lambda match: values[match.group()], text)


def write(files: dict[Path, str]) -> None:
    """Write the planned files, creating folders; an existing file is never replaced (exclusive
    create), so a file that appeared since the check is an error, not overwritten."""
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as handle:
            handle.write(text)
