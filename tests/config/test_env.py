"""The environment layer: team files, cluster detection, XP root and reference dir."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from baton.config import compose, config_dirs, load_env
from baton.errors import ConfigError
from tests.config.conftest import write

TEAM = """
hostnames:
  '{host}': lab
clusters:
  local:
    xp_root: {local_root}
  lab:
    xp_root: {lab_root}
    reference_dir: {reference}
    partitions: {{global: gpu, team: audio}}
    slurm: {{time: 60}}
  other:
    xp_root: /other
"""


@pytest.fixture
def team_dir(tmp_path: Path) -> Path:
    conf = tmp_path / "team_conf"
    write(
        conf / "teams" / "audio.yaml",
        TEAM.format(
            host="no-such-host-\\d+",
            local_root=tmp_path / "local_root",
            lab_root=tmp_path / "lab_root",
            reference=tmp_path / "ref",
        ),
    )
    return conf


def test_default_env_is_local_with_outputs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("BATON_XP_DIR")
    monkeypatch.chdir(tmp_path)
    env = load_env()
    assert (env.team, env.cluster, env.reference_dir) == ("default", "local", None)
    assert env.xp_root == str(tmp_path / "outputs")


def test_team_and_cluster_from_env_vars(team_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("BATON_XP_DIR")
    monkeypatch.setenv("BATON_CONFIG_PATH", str(team_dir))
    monkeypatch.setenv("BATON_TEAM", "audio")
    assert load_env().xp_root == str(tmp_path / "local_root")
    monkeypatch.setenv("BATON_CLUSTER", "lab")
    env = load_env()
    assert env.cluster == "lab"
    assert env.xp_root == str(tmp_path / "lab_root")
    assert env.partitions == {"global": "gpu", "team": "audio"}
    assert env.slurm == {"time": 60}
    # Single entries are overridden by their own variable.
    monkeypatch.setenv("BATON_XP_DIR", str(tmp_path / "mine"))
    assert load_env().xp_root == str(tmp_path / "mine")
    # An explicit xp.root in the config wins over everything.
    assert load_env(config_dirs(), xp_root=str(tmp_path / "explicit")).xp_root == str(tmp_path / "explicit")


def test_cluster_detected_from_slurm_then_hostname(team_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("BATON_CONFIG", str(team_dir / "teams" / "audio.yaml"))
    monkeypatch.setenv("SLURM_CLUSTER_NAME", "other")
    assert load_env().cluster == "other"
    monkeypatch.setenv("SLURM_CLUSTER_NAME", "not-in-the-team-file")
    assert load_env().cluster == "local"
    write(
        team_dir / "teams" / "audio.yaml",
        TEAM.format(host=socket.gethostname(), local_root="/l", lab_root="/lab", reference="/r"),
    )
    assert load_env().cluster == "lab"


def test_unknown_team_cluster_and_keys_are_errors(team_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BATON_TEAM", "adio")
    monkeypatch.setenv("BATON_CONFIG_PATH", str(team_dir))
    with pytest.raises(ConfigError, match=r"unknown team 'adio' \(from BATON_TEAM\) \(did you mean 'audio'\?\)"):
        load_env()
    monkeypatch.setenv("BATON_TEAM", "audio")
    monkeypatch.setenv("BATON_CLUSTER", "labb")
    with pytest.raises(ConfigError, match=r"unknown cluster 'labb' .*did you mean 'lab'"):
        load_env()
    monkeypatch.setenv("BATON_CLUSTER", "lab")
    write(team_dir / "teams" / "audio.yaml", "clusters:\n  lab:\n    xp_rot: /x\n")
    with pytest.raises(ConfigError, match=r"unknown key 'clusters.lab.xp_rot' .*did you mean 'xp_root'"):
        load_env()


def test_env_never_changes_the_signature(team_dir: Path, monkeypatch: pytest.MonkeyPatch):
    here = compose(["solver=example"])
    monkeypatch.setenv("BATON_CONFIG", str(team_dir / "teams" / "audio.yaml"))
    monkeypatch.setenv("BATON_CLUSTER", "lab")
    monkeypatch.delenv("BATON_XP_DIR")
    there = compose(["solver=example"])
    assert there.xp.sig == here.xp.sig
    assert there.xp.root != here.xp.root
