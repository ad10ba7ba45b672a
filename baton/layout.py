"""Where an XP lives and what its folder holds: `<xp_root>/xps/<sig>/`, named once.

The config (which places an XP), the solver (which writes into it and reads other XPs through
`//sig/` references), and the experiment manager (which lists and inspects them) all name the
folder and its files from here. Standard library only: the bottom layer.
"""

from __future__ import annotations

from pathlib import Path

XPS = "xps"  # under the XP root: one folder per signature
ARGV = ".argv.json"  # the overrides the XP was run with (the experiment manager's)
CONFIG = "config.yaml"  # the fully resolved config
ENV_LOG = "env.log"  # what a rerun must match (host, packages, git commits)
HISTORY = "history.jsonl"  # one line per finished epoch: {stage: {metric: value}}
SOLVER_LOG = "solver.log"  # the run's log


def xps_dir(root: str | Path) -> Path:
    """The folder holding every XP of an XP root."""
    return Path(root) / XPS


def xp_folder(root: str | Path, sig: str) -> Path:
    """The folder of XP `sig` under an XP root."""
    return xps_dir(root) / sig
