"""Where configs are found: baton's own `conf/`, then the user's folders.

A user's project adds folders with `--config-dir DIR` (repeatable) or `BATON_CONFIG_PATH`
(os.pathsep-separated); each has the same layout as baton's `conf/` (`solver/`, `model/`,
`dset/`, `conditioner/`, `teams/`). Baton's files win a name clash, so a project cannot change
what an existing signature means by shadowing a baton file: give project files their own names.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from baton.errors import ConfigError

CONFIG_PATH_ENV = "BATON_CONFIG_PATH"
BATON_CONF = Path(__file__).resolve().parent.parent / "conf"


def config_dirs(extra: str | Sequence[str] | None = None) -> list[Path]:
    """The config search path: baton's conf, then `extra`, then `BATON_CONFIG_PATH`.

    Raises:
        ConfigError: a folder does not exist.
    """
    if extra is None:
        extra = []
    elif isinstance(extra, (str, os.PathLike)):
        extra = [str(extra)]
    sources = [(d, "--config-dir") for d in extra]
    env = os.environ.get(CONFIG_PATH_ENV, "")
    sources += [(d, CONFIG_PATH_ENV) for d in env.split(os.pathsep) if d]
    dirs = [BATON_CONF]
    for folder, origin in sources:
        path = Path(folder).expanduser().resolve()
        if not path.is_dir():
            raise ConfigError(f"config dir '{folder}' (from {origin}) does not exist")
        if path not in dirs:
            dirs.append(path)
    return dirs


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
