"""Shared test helpers: compose baton's configs without the CLI; set the umask for a block."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import baton

CONF_DIR = Path(baton.__file__).parent / "conf"


def example_config(folder: Path | str, *overrides: str) -> Any:
    """The example solver's config with `overrides`, writing into `folder`."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(
            "config", overrides=["solver=example", f"xp.folder={folder}", *overrides]
        )


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run the block under `mask` (the process's umask), then restore the previous one."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    """Permission bits of `path` (0o644, 0o755, ...)."""
    return stat.S_IMODE(path.stat().st_mode)
