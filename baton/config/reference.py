"""`//reference/...`: paths to shared data that live in a different place on each cluster.

Any string value that starts with `//reference/` is rewritten against the environment's
reference dir, so one config (and one signature) works on every cluster. The rest of the value
must stay inside that dir once normalised: `//reference/../x` or `//reference//etc` is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from baton.config.env import Env
from baton.errors import ConfigError

PREFIX = "//reference/"


def resolve_references(cfg: Any, env: Env) -> None:
    """Rewrite `//reference/...` strings in a resolved DictConfig, in place.

    Raises:
        ConfigError: a value uses the prefix and no reference dir is set, or it does not exist,
            or the value leads outside it (`..`, an absolute path after the prefix).
    """
    from omegaconf import DictConfig, ListConfig

    def visit(node: Any, prefix: str) -> None:
        if isinstance(node, DictConfig):
            entries = [(key, prefix + str(key)) for key in node.keys()]
        else:
            entries = [(index, f"{prefix[:-1]}[{index}]") for index in range(len(node))]
        for key, where in entries:
            value = node[key]
            if isinstance(value, (DictConfig, ListConfig)):
                visit(value, f"{where}.")
            elif isinstance(value, str) and value.startswith(PREFIX):
                node[key] = _resolve(value, where, env)

    visit(cfg, "")


def _resolve(value: str, key: str, env: Env) -> str:
    if env.reference_dir is None:
        raise ConfigError(
            f"config key '{key}' is '{value}' but no reference dir is set: set "
            f"BATON_REFERENCE_DIR, or clusters.{env.cluster}.reference_dir in {env.team_file}"
        )
    root = Path(env.reference_dir)
    if not root.is_dir():
        raise ConfigError(
            f"config key '{key}' is '{value}' but the reference dir {root} "
            f"(from {env.reference_origin}) does not exist"
        )
    # Lexical normalisation, not resolve(): a symlink inside the reference dir that points to
    # another disk is how clusters share data, but `..` (or an absolute rest) leaves the dir.
    base = os.path.normpath(os.path.abspath(root))
    target = os.path.normpath(os.path.join(base, value[len(PREFIX):]))
    if os.path.commonpath([base, target]) != base:
        raise ConfigError(
            f"config key '{key}' is '{value}', which leads outside the reference dir {base}; "
            f"write a path inside it, without '..' or a leading '/' after {PREFIX}"
        )
    return target
