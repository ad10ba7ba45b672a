"""The project file: `baton.toml`, looked for in the working directory and its parents (like git).

A project names its config folders, grid packages and the modules to import once, so `baton run`
and `baton grid` work from anywhere inside it with no environment variables (`baton new NAME`
writes one):

    # baton.toml
    config_dirs = ["conf"]      # folders like baton/conf; relative to this file's folder
    grid_package = "grids"      # a package of grid files, or a list of them
    imports = ["mytask"]        # modules imported before the solver is looked up
    xp_root = "outputs"         # where XPs live (optional; default: outputs/ next to this file)

The file is one more source, after the command line and the environment, before the defaults:

- config folders: baton's conf/, then `--config-dir`, `BATON_CONFIG_PATH`, then `config_dirs`;
- grid packages: `--package`, `BATON_GRID_PACKAGE`, then `grid_package`, then `baton.grids`;
- XP root: `xp.root`, `BATON_XP_DIR`, the team file's cluster entry, then `xp_root`;
- imports: the config's `imports:`, then `imports` here.

The nearest `baton.toml` wins; there is no merging with files further up. The project's folder
goes last on `sys.path` (as the working directory does), so its modules are importable from any
of its subfolders but never shadow an installed package.

The file is read with `tomllib` (Python 3.11+), else `tomli` when installed; on Python 3.10
without tomli a small reader takes the flat subset baton needs: `key = "string"` and
`key = ["a", "b"]` (single- or double-quoted strings, arrays over several lines, comments).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baton.errors import ConfigError, did_you_mean

PROJECT_FILE = "baton.toml"
DEFAULT_XP_DIR = "outputs"
KEYS = ("config_dirs", "grid_package", "imports", "xp_root")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True)
class Project:
    """A parsed `baton.toml`: paths are absolute, resolved against the file's folder."""

    file: Path
    config_dirs: tuple[Path, ...] = ()
    grid_packages: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    xp_root: Path | None = None  # None: not set in the file (the default is root / outputs)

    @property
    def root(self) -> Path:
        return self.file.parent

    @property
    def origin(self) -> str:
        return f"{PROJECT_FILE} {self.file}"

    def make_importable(self) -> None:
        """Put the project's folder last on `sys.path` (once), so `imports`, grid packages and
        `solver: pkg.Class` resolve from any subfolder without shadowing installed packages."""
        from ..import_paths import append_project_folder

        append_project_folder(str(self.root))


def find_project(start: str | Path | None = None) -> Project | None:
    """The project of the nearest `baton.toml` in `start` (default: the working directory) or
    one of its parents; None when there is none.

    Raises:
        ConfigError: the file cannot be read, is not valid TOML, or has an unknown key or a
            value of the wrong type.
    """
    folder = Path.cwd() if start is None else Path(start).absolute()
    for candidate in (folder, *folder.parents):
        path = candidate / PROJECT_FILE
        if path.is_file():
            return load_project(path)
    return None


def load_project(path: str | Path) -> Project:
    """Parse and check one project file (see the module doc for its keys).

    Raises:
        ConfigError: unreadable file, invalid TOML, unknown key, or a wrong type.
    """
    path = Path(path).absolute()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read project file {path}: {exc}") from None
    data = _toml_loads(text, path)
    for key in data:
        if key not in KEYS:
            raise ConfigError(
                f"unknown key '{key}' in project file {path}{did_you_mean(key, KEYS)}; known: {', '.join(KEYS)}"
            )
    root = path.parent
    grid_packages = _strings(data, "grid_package", path)
    for package in grid_packages:
        if not _DOTTED.fullmatch(package):
            raise ConfigError(
                f"grid_package '{package}' in project file {path} is not a package name "
                "(dotted Python identifiers, e.g. 'grids' or 'myproj.grids')"
            )
    xp_root = data.get("xp_root")
    if xp_root is not None and not isinstance(xp_root, str):
        raise ConfigError(f"'xp_root' in project file {path} must be a string (a folder), got {xp_root!r}")
    return Project(
        file=path,
        config_dirs=tuple(_under(root, d) for d in _strings(data, "config_dirs", path)),
        grid_packages=tuple(grid_packages),
        imports=tuple(_strings(data, "imports", path)),
        xp_root=None if xp_root is None else _under(root, xp_root),
    )


def project_xp_root(project: Project) -> tuple[Path, str]:
    """The XP root a project gives (its `xp_root`, else `outputs/` next to the file), and where
    that came from, for messages."""
    if project.xp_root is not None:
        return project.xp_root, f"xp_root in {project.file}"
    return project.root / DEFAULT_XP_DIR, f"the project default ({DEFAULT_XP_DIR}/ next to {project.file})"


def describe_search(start: str | Path | None = None) -> str:
    """'project file /p/baton.toml' or 'no baton.toml in /cwd or its parents', for messages."""
    try:
        project = find_project(start)
    except ConfigError as exc:
        return f"project file unreadable ({exc})"
    if project is not None:
        return f"project file {project.file}"
    folder = Path.cwd() if start is None else Path(start).absolute()
    return f"no {PROJECT_FILE} in {folder} or its parents"


def no_project_note(start: str | Path | None = None) -> str:
    """'; no baton.toml in /cwd or its parents' when there is no project file, else '': the
    part of a "where baton looked" message that says a project file was looked for."""
    description = describe_search(start)
    return "" if description.startswith("project file ") else f"; {description}"


def _under(root: Path, value: str) -> Path:
    path = Path(os.path.expandvars(value)).expanduser()
    return path if path.is_absolute() else root / path


def _strings(data: dict[str, Any], key: str, path: Path) -> list[str]:
    value = data.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(
            f"'{key}' in project file {path} must be a string or a list of strings, got {value!r}"
        )
    return list(value)


def _toml_loads(text: str, path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib

        loads, error = tomllib.loads, tomllib.TOMLDecodeError
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli
        except ModuleNotFoundError:
            return parse_flat_toml(text, path)
        loads, error = tomli.loads, tomli.TOMLDecodeError
    try:
        return loads(text)
    except error as exc:
        raise ConfigError(f"invalid TOML in project file {path}: {exc}; fix the file") from None


_TOKEN = re.compile(
    r"""(?P<space>[ \t\r]+)|(?P<comment>\#[^\n]*)|(?P<newline>\n)
    |(?P<basic>"(?:[^"\\\n]|\\.)*")|(?P<literal>'[^'\n]*')
    |(?P<punct>[=\[\],])|(?P<bare>[A-Za-z0-9_-]+)""",
    re.VERBOSE,
)


def parse_flat_toml(text: str, path: str | Path = PROJECT_FILE) -> dict[str, Any]:
    """The flat TOML subset of a project file, for Python 3.10 without tomli: top-level
    `key = "string"` or `key = ["a", "b"]` lines (arrays may span lines), and comments.

    Raises:
        ConfigError: anything else, naming the line and how to read the full format.
    """
    tokens: list[tuple[str, str, int]] = []
    line, pos = 1, 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise _unsupported(path, line, text[pos:pos + 10])
        kind = match.lastgroup or ""
        if kind == "newline":
            tokens.append((kind, "\n", line))
            line += 1
        elif kind not in ("space", "comment"):
            tokens.append((kind, match.group(), line))
        pos = match.end()
    tokens.append(("end", "", line))

    data: dict[str, Any] = {}
    index = 0

    def skip_newlines() -> None:
        nonlocal index
        while tokens[index][0] == "newline":
            index += 1

    def expect(value: str) -> None:
        nonlocal index
        kind, text_, at = tokens[index]
        if text_ != value or kind not in ("punct",):
            raise _unsupported(path, at, text_ or "end of file")
        index += 1

    def string() -> str:
        nonlocal index
        kind, raw, at = tokens[index]
        index += 1
        if kind == "literal":
            return raw[1:-1]
        if kind == "basic":
            try:
                return str(json.loads(raw))
            except ValueError:
                raise _unsupported(path, at, raw) from None
        raise _unsupported(path, at, raw or "end of file")

    def value() -> Any:
        nonlocal index
        if tokens[index][1] != "[":
            return string()
        index += 1
        items: list[str] = []
        skip_newlines()
        while tokens[index][1] != "]":
            items.append(string())
            skip_newlines()
            if tokens[index][1] == ",":
                index += 1
                skip_newlines()
            elif tokens[index][1] != "]":
                raise _unsupported(path, tokens[index][2], tokens[index][1] or "end of file")
        index += 1
        return items

    while True:
        skip_newlines()
        kind, key, at = tokens[index]
        if kind == "end":
            return data
        if kind != "bare":
            raise _unsupported(path, at, key)
        index += 1
        expect("=")
        if key in data:
            raise ConfigError(f"invalid TOML in project file {path} line {at}: key '{key}' is set twice")
        data[key] = value()
        if tokens[index][0] not in ("newline", "end"):
            raise _unsupported(path, tokens[index][2], tokens[index][1])


def _unsupported(path: str | Path, line: int, near: str) -> ConfigError:
    return ConfigError(
        f"cannot read project file {path} line {line} (near {near!r}): without tomllib (Python "
        "3.11+) or tomli only `key = \"text\"` and `key = [\"a\", \"b\"]` lines are read; "
        "`pip install tomli` or simplify the line"
    )


def unique(items: Sequence[str]) -> list[str]:
    """`items` without repeats, first occurrence kept."""
    return list(dict.fromkeys(items))
