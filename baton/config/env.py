"""The environment layer: where XPs and reference data live on this team's clusters.

A team file `teams/<team>.yaml` (searched in the config path) maps cluster name -> settings and
lists hostname rules. The team is `BATON_TEAM` (default `default`) or the file `BATON_CONFIG`;
the cluster is `BATON_CLUSTER`, else `SLURM_CLUSTER_NAME` when the team file knows it, else the
first hostname rule that matches, else `local`. `BATON_XP_DIR` and `BATON_REFERENCE_DIR`
override single entries. With no XP root from any of these, a project file (`baton.toml`) gives
its `xp_root`, else `outputs/` next to it; outside a project it is `./outputs`. Nothing here
enters a signature: the same XP has the same signature on every cluster.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baton.config.project import find_project, project_xp_root
from baton.config.search import config_dirs
from baton.errors import ConfigError, did_you_mean, yaml_error_line

DEFAULT_XP_ROOT = "./outputs"
_TEAM_KEYS = ("hostnames", "clusters")
_CLUSTER_KEYS = ("xp_root", "reference_dir", "partitions", "slurm")


@dataclass(frozen=True)
class Env:
    """The resolved environment: one record of where things are, written into each config."""

    team: str
    cluster: str
    team_file: str
    xp_root: str
    xp_root_origin: str
    reference_dir: str | None
    reference_origin: str
    partitions: dict[str, str | None] = field(default_factory=dict)
    slurm: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "team": self.team,
            "cluster": self.cluster,
            "team_file": self.team_file,
            "xp_root": self.xp_root,
            "reference_dir": self.reference_dir,
            "partitions": dict(self.partitions),
            "slurm": dict(self.slurm),
        }


def load_env(dirs: Sequence[Path] | None = None, xp_root: str | None = None) -> Env:
    """Resolve team, cluster, XP root and reference dir from the environment and team file.

    Args:
        dirs: the config search path (default: `config_dirs()`).
        xp_root: an explicit `xp.root` from the config; it wins over everything else.

    Raises:
        ConfigError: unknown team or cluster, or a team file with unknown keys.
    """
    dirs = config_dirs() if dirs is None else dirs
    team, team_file = _team_file(dirs)
    content = _load_team_file(team_file)
    clusters: Mapping[str, Any] = content.get("clusters") or {}
    cluster = _cluster(clusters, content.get("hostnames") or {}, team_file)
    settings = dict(clusters.get(cluster) or {})
    for key in settings:
        if key not in _CLUSTER_KEYS:
            raise ConfigError(
                f"unknown key 'clusters.{cluster}.{key}' in team file {team_file}"
                f"{did_you_mean(key, _CLUSTER_KEYS)}; known: {', '.join(_CLUSTER_KEYS)}"
            )

    if xp_root is not None:
        root, root_origin = xp_root, "xp.root"
    elif os.environ.get("BATON_XP_DIR"):
        root, root_origin = os.environ["BATON_XP_DIR"], "BATON_XP_DIR"
    elif settings.get("xp_root"):
        root, root_origin = settings["xp_root"], f"clusters.{cluster}.xp_root in {team_file}"
    elif (project := find_project()) is not None:
        project_root, root_origin = project_xp_root(project)
        root = str(project_root)
    else:
        root, root_origin = DEFAULT_XP_ROOT, "the default"

    if os.environ.get("BATON_REFERENCE_DIR"):
        reference, reference_origin = os.environ["BATON_REFERENCE_DIR"], "BATON_REFERENCE_DIR"
    elif settings.get("reference_dir"):
        reference = settings["reference_dir"]
        reference_origin = f"clusters.{cluster}.reference_dir in {team_file}"
    else:
        reference, reference_origin = None, ""

    return Env(
        team=team,
        cluster=cluster,
        team_file=str(team_file),
        xp_root=_absolute(root),
        xp_root_origin=root_origin,
        reference_dir=None if reference is None else _absolute(reference),
        reference_origin=reference_origin,
        partitions=dict(settings.get("partitions") or {}),
        slurm=dict(settings.get("slurm") or {}),
    )


def _absolute(path: str) -> str:
    return str(Path(os.path.expandvars(str(path))).expanduser().absolute())


def _team_file(dirs: Sequence[Path]) -> tuple[str, Path]:
    explicit = os.environ.get("BATON_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"team file '{explicit}' (from BATON_CONFIG) does not exist")
        return path.stem, path
    team = os.environ.get("BATON_TEAM") or "default"
    # The user's folders come first here: a team file is the user's to write, and it never
    # changes a signature.
    for d in [*dirs[1:], dirs[0]]:
        path = d / "teams" / f"{team}.yaml"
        if path.is_file():
            return team, path
    known = sorted({p.stem for d in dirs for p in (d / "teams").glob("*.yaml")})
    raise ConfigError(
        f"unknown team '{team}' (from BATON_TEAM){did_you_mean(team, known)}; "
        f"known: {', '.join(known) or 'none'}; or point BATON_CONFIG to a team file"
    )


def _load_team_file(path: Path) -> dict[str, Any]:
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        loaded = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_error_line(exc)) from None
    except (OmegaConfBaseException, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise ConfigError(f"cannot read team file {path}: {reason}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"team file {path} must be a mapping with keys {', '.join(_TEAM_KEYS)}")
    for key in map(str, loaded):
        if key not in _TEAM_KEYS:
            raise ConfigError(
                f"unknown key '{key}' in team file {path}{did_you_mean(key, _TEAM_KEYS)}; "
                f"known: {', '.join(_TEAM_KEYS)}"
            )
    return {str(k): v for k, v in loaded.items()}


def _cluster(clusters: Mapping[str, Any], hostnames: Mapping[str, str], team_file: Path) -> str:
    explicit = os.environ.get("BATON_CLUSTER")
    if explicit:
        if explicit not in clusters and explicit != "local":
            raise ConfigError(
                f"unknown cluster '{explicit}' (from BATON_CLUSTER) in team file {team_file}"
                f"{did_you_mean(explicit, clusters)}; known: {', '.join(clusters) or 'none'}"
            )
        return explicit
    slurm_cluster = os.environ.get("SLURM_CLUSTER_NAME")
    if slurm_cluster is not None and slurm_cluster in clusters:
        return slurm_cluster
    host = socket.gethostname()
    for pattern, cluster in hostnames.items():
        if re.fullmatch(pattern, host):
            if cluster not in clusters:
                raise ConfigError(
                    f"hostname rule '{pattern}' in team file {team_file} names cluster "
                    f"'{cluster}', which has no entry under 'clusters'"
                )
            return cluster
    return "local"
