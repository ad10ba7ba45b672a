"""`baton.run(...)`: what `baton run` does, from Python (a notebook, a script, a test).

The XP gets the same folder files (`.argv.json`, `config.yaml`, `.exit.json`, ...), lock and
status as from the command line, so `baton ls`, `info`, `run -f` and `export` see it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class XPRun:
    """The outcome of `baton.run`: the XP's signature and folder, its status, its history."""

    sig: str
    folder: Path
    status: str  # done, or killed when it stopped before optim.epochs
    history: list[dict[str, dict[str, Any]]]


def run(
    overrides: Sequence[str] = (),
    config_dir: str | Sequence[str] = (),
    *,
    clear: bool = False,
    accept_config_change: bool = False,
) -> XPRun:
    """Compose, sign and run an XP in this process, resuming it when it exists.

    Args:
        overrides: as on the command line, e.g. ["solver=example", "optim.lr=1e-3"].
        config_dir: your config folders (like `--config-dir`).
        clear: start the XP afresh (`--clear`).
        accept_config_change: resume an XP whose config changed since it ran.
    Raises:
        UserError: bad overrides, a busy XP, config drift, ... (one line each).
    """
    from baton.config import compose_xp
    from baton.xp.folder import XPFolder
    from baton.xp.launch import run_xp

    dirs = [config_dir] if isinstance(config_dir, str) else list(config_dir)
    xp = compose_xp(list(overrides), dirs)
    status = run_xp(xp, clear=clear, argv=list(overrides), accept_config_change=accept_config_change)
    return XPRun(sig=xp.sig, folder=xp.folder, status=status, history=XPFolder(xp.folder).history())
