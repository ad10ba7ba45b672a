"""An XP folder, `<xp_root>/xps/<sig>/`, and the files the experiment manager keeps in it.

The solver writes checkpoints, `history.jsonl`, `solver.log` and `tensorboard/`; this module
writes `.argv.json` (the overrides), `config.yaml` (fully resolved) and `env.log`, and reads
everything back for `info`, `ls` and grids.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from baton.atomic import write_text_atomic
from baton.errors import UserError, did_you_mean
from baton.layout import ARGV, CONFIG, ENV_LOG, HISTORY, SOLVER_LOG, xps_dir

__all__ = ["ARGV", "CONFIG", "ENV_LOG", "HISTORY", "SOLVER_LOG", "XPFolder", "xps_dir"]


class XPFolder:
    """One XP's folder. It exists as an XP once its `.argv.json` is written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"XPFolder({str(self.path)!r})"

    @property
    def sig(self) -> str:
        return self.path.name

    def exists(self) -> bool:
        return (self.path / ARGV).is_file()

    def argv(self) -> list[str]:
        return read_json(self.path / ARGV)

    def write_argv(self, overrides: Sequence[str]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path / ARGV, json.dumps(list(overrides), indent=2) + "\n")

    def write_config(self, cfg: Any) -> None:
        from omegaconf import OmegaConf

        write_text_atomic(self.path / CONFIG, OmegaConf.to_yaml(cfg, resolve=True))

    def config(self) -> Any | None:
        """The stored resolved config, or None before the XP first ran."""
        from omegaconf import OmegaConf

        path = self.path / CONFIG
        if not path.is_file():
            return None
        try:
            return OmegaConf.load(path)
        except Exception as exc:  # yaml and OmegaConf raise several types for a damaged file
            raise UserError(f"{path} is corrupt ({_first_line(exc)}); restore it or delete the XP folder") from None

    def history(self) -> list[dict[str, dict[str, float]]]:
        """One entry per finished epoch (stage -> metrics).

        A torn last line (no newline: an append cut short) and blank lines are ignored. Any
        other line that is not a {stage: {metric: value}} object is a one-line UserError naming
        the file and line: dropping it, or every line after it, would show a wrong epoch count
        and best metric, and reading on would crash `ls` for every XP.

        Raises:
            UserError: a line is damaged (bad JSON, not UTF-8, not stage -> metrics).
        """
        path = self.path / HISTORY
        if not path.is_file():
            return []
        data = path.read_bytes()
        lines = data.split(b"\n")
        if lines[-1] == b"":
            lines.pop()  # what follows the last newline: nothing, or a torn line
        entries = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entries.append(_epoch_entry(line))
            except ValueError as exc:
                if number == len(lines) and not data.endswith(b"\n"):
                    break
                raise UserError(f"{path} line {number} is corrupt ({exc}); "
                                "fix or delete that line, or delete the XP folder") from None
        return entries


def _epoch_entry(line: bytes) -> dict[str, dict[str, float]]:
    """One history.jsonl line as an epoch entry, {stage: {metric: value}}.

    Raises:
        ValueError: why the line is not one (the message names the problem only).
    """
    try:
        entry = json.loads(line.decode())
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg}") from None
    if not isinstance(entry, dict):
        raise ValueError(f"a JSON {json_kind(entry)}, not an object")
    for stage, metrics in entry.items():
        if not isinstance(metrics, dict):
            raise ValueError(f"stage '{stage}' holds a JSON {json_kind(metrics)}, not an object of metrics")
    return entry


def json_kind(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages ('array', not 'list')."""
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_json(path: Path) -> Any:
    """A JSON file of an XP folder; a damaged one is a one-line UserError naming it."""
    try:
        return json.loads(path.read_text())
    except ValueError as exc:  # bad JSON, or bytes that are not UTF-8
        raise UserError(f"{path} is corrupt ({exc}); restore it or delete the XP folder") from None


def all_xps(root: str | Path) -> list[XPFolder]:
    """Every XP under the root, oldest first."""
    base = xps_dir(root)
    if not base.is_dir():
        return []
    found = [XPFolder(p) for p in base.iterdir() if (p / ARGV).is_file()]
    return sorted(found, key=lambda xp: (xp.path / ARGV).stat().st_mtime)


def find_xp(sig: str, root: str | Path) -> XPFolder:
    """The XP with this signature (or a unique prefix of it).

    Raises:
        UserError: no XP, or several, match.
    """
    folder = XPFolder(xps_dir(root) / sig)
    if folder.exists():
        return folder
    known = [xp.sig for xp in all_xps(root)]
    matches = [s for s in known if s.startswith(sig)] if sig else []
    if len(matches) == 1:
        return XPFolder(xps_dir(root) / matches[0])
    if len(matches) > 1:
        raise UserError(f"sig prefix '{sig}' matches {len(matches)} XPs: {', '.join(sorted(matches))}")
    raise UserError(
        f"unknown sig '{sig}': no XP in {xps_dir(root)}{did_you_mean(sig, known)}; "
        "`baton ls` lists the XPs (set BATON_XP_DIR if they live elsewhere)"
    )
