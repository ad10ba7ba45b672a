"""Shared test helpers: compose baton's configs without the CLI."""

from __future__ import annotations

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
