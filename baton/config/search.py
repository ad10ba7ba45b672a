"""Where configs are found: baton's own `conf/`, then the user's folders.

A user's project adds folders with `--config-dir DIR` (repeatable), `BATON_CONFIG_PATH`
(os.pathsep-separated) or `config_dirs` in its project file (`baton.toml`, see
`baton.config.project`), searched in that order; each has the same layout as baton's `conf/`
(`solver/`, `model/`, `dset/`, `conditioner/`, `teams/`). Baton's files win a name clash, so a
project cannot change what an existing signature means by shadowing a baton file: give project
files their own names.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from baton.config.project import PROJECT_FILE, find_project, no_project_note
from baton.errors import ConfigError

CONFIG_PATH_ENV = "BATON_CONFIG_PATH"
BATON_CONF = Path(__file__).resolve().parent.parent / "conf"


def config_dirs(extra: str | Sequence[str] | None = None) -> list[Path]:
    """The config search path: baton's conf, then `extra` (`--config-dir`), then
    `BATON_CONFIG_PATH`, then the project file's `config_dirs`.

    Raises:
        ConfigError: a folder does not exist, or the project file is invalid.
    """
    return [path for path, _ in config_dir_sources(extra)]


def config_dir_sources(extra: str | Sequence[str] | None = None) -> list[tuple[Path, str]]:
    """Like `config_dirs`, each folder with where it was named ('baton', '--config-dir',
    'BATON_CONFIG_PATH', 'config_dirs in /p/baton.toml').

    Raises:
        ConfigError: a folder does not exist, or the project file is invalid.
    """
    if extra is None:
        extra = []
    elif isinstance(extra, (str, os.PathLike)):
        extra = [str(extra)]
    sources = [(str(d), "--config-dir") for d in extra]
    env = os.environ.get(CONFIG_PATH_ENV, "")
    sources += [(d, CONFIG_PATH_ENV) for d in env.split(os.pathsep) if d]
    project = find_project()
    if project is not None:
        sources += [(str(d), f"config_dirs in {project.file}") for d in project.config_dirs]
    dirs: list[tuple[Path, str]] = [(BATON_CONF, "baton")]
    for folder, origin in sources:
        path = Path(folder).expanduser().resolve()
        if not path.is_dir():
            raise ConfigError(f"config dir '{folder}' (from {origin}) does not exist")
        if all(path != known for known, _ in dirs):
            dirs.append((path, origin))
    return dirs


def search_places(extra: str | Sequence[str] | None = None) -> str:
    """Where config files were looked for and how to add a folder, on one line, for messages:
    'searched /…/baton/conf (baton), /p/conf (config_dirs in /p/baton.toml); add a config
    folder with --config-dir DIR, BATON_CONFIG_PATH or config_dirs in baton.toml'."""
    try:
        places = ", ".join(f"{path} ({origin})" for path, origin in config_dir_sources(extra))
    except ConfigError as exc:
        places = f"{BATON_CONF} (baton); {exc}"
    return (
        f"searched {places}{no_project_note()}; add a config folder with --config-dir DIR, "
        f"{CONFIG_PATH_ENV} or config_dirs in {PROJECT_FILE}"
    )


def solver_search_places(imports: Sequence[str] = ()) -> str:
    """How a registered solver name is looked for and how to add a module, on one line, for an
    unknown-solver message: 'imported first: mytask (the config's imports: and imports in
    /p/baton.toml); list the module that registers the solver under imports: ...'."""
    imported = ", ".join(map(str, imports)) or "none"
    try:
        project = find_project()
    except ConfigError:
        project = None
    where = f"imports in {project.file}" if project is not None else f"imports in {PROJECT_FILE}"
    return (
        f"imported first: {imported} (the config's imports: and {where}{no_project_note()}); "
        f"list the module that registers it (@register_solver) under imports: in the solver's "
        f"YAML or in {PROJECT_FILE}, or set solver: package.module.Class"
    )


def is_group(name: str, dirs: Sequence[Path]) -> bool:
    """True when `name` ('model', 'solver/compression') is a config group folder."""
    return any((d / name).is_dir() for d in dirs)


def group_options(group: str, dirs: Sequence[Path]) -> list[str]:
    """Every option of `group`, nested ones as 'sub/option' (`solver=compression/debug`)."""
    options: set[str] = set()
    for d in dirs:
        root = d / group
        if root.is_dir():
            options.update(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))
    return sorted(options)


def find_config_file(group: str, option: str, dirs: Sequence[Path]) -> Path | None:
    """The file Hydra loads for `group=option`: the first folder in the search path that has it."""
    for d in dirs:
        path = d / group / f"{option}.yaml"
        if path.is_file():
            return path
    return None
