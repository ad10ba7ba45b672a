from __future__ import annotations

from pathlib import Path

import pytest

ENV_VARS = (
    "BATON_XP_DIR",
    "BATON_CONFIG_PATH",
    "BATON_CONFIG",
    "BATON_TEAM",
    "BATON_CLUSTER",
    "BATON_REFERENCE_DIR",
    "SLURM_CLUSTER_NAME",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Every test starts from an unconfigured environment with its XP root in tmp_path."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "xps_root"
    monkeypatch.setenv("BATON_XP_DIR", str(root))
    return root


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def project_conf(tmp_path: Path) -> Path:
    """A user's config dir: a solver that picks a model group option, and two models."""
    conf = tmp_path / "project_conf"
    write(
        conf / "solver" / "toy.yaml",
        "# @package _global_\n"
        "defaults:\n  - /solver/default\n  - /model: small\n  - _self_\n"
        "solver: example\n",
    )
    write(conf / "model" / "small.yaml", "hidden: 16\nlayers: 2\n")
    write(conf / "model" / "big.yaml", "hidden: 256\nlayers: 8\n")
    write(conf / "model" / "unfinished.yaml", "hidden: 16\nlayers: ???\n")
    return conf
