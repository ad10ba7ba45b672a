"""Grid files: the launcher API and how grids are found."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from baton.errors import UserError
from baton.xp.explore import Explorer, Launcher, explorer, list_grids, load_grid


def test_launcher_declares_xps_with_bound_overrides():
    launcher = Launcher()
    launcher.bind_(solver="example")
    for lr in [1e-3, 1e-2]:
        launcher({"optim.lr": lr})
    small = launcher.bind("task.hidden=16")
    small(optim={"lr": 1e-3, "ema": {"use": False}})
    assert launcher.declared == [
        ["solver=example", "optim.lr=0.001"],
        ["solver=example", "optim.lr=0.01"],
        ["solver=example", "task.hidden=16", "optim.lr=0.001", "optim.ema.use=false"],
    ]
    assert launcher.overrides == ["solver=example"]  # bind made a copy


def test_a_declared_xps_sig_is_composed_with_the_grids_config_dirs(tmp_path, clean_env):
    """`baton grid NAME --config-dir conf`: `.sig` is the sig the grid runs the XP under, so a
    later XP can refer to an XP of a solver that only `conf` defines."""
    from baton.config import compose_xp

    solver_dir = tmp_path / "conf" / "solver"
    solver_dir.mkdir(parents=True)
    (solver_dir / "mine.yaml").write_text("# @package _global_\ndefaults:\n  - /solver/example\n  - _self_\n")
    refs = []

    @explorer
    def chain(launcher):
        first = launcher.bind(seed=3)(solver="mine")
        refs.append(first.sig)
        launcher(solver="mine", optim={"lr": 0.01})

    declared = chain.declare([str(tmp_path / "conf")])
    assert refs == [compose_xp(declared[0], [str(tmp_path / "conf")]).sig]
    with pytest.raises(UserError, match="mine"):  # without the folder, no such solver
        _ = Launcher()(solver="mine").sig


def test_explorer_decorator_bare_and_with_metrics():
    @explorer
    def plain(launcher):
        launcher("seed=1")

    @explorer(metrics=["valid.sisnr"])
    def picky(launcher):
        launcher("seed=2")

    assert isinstance(plain, Explorer) and plain.declare() == [["seed=1"]]
    assert picky.metrics == ["valid.sisnr"]


def test_baton_ships_an_example_grid():
    assert "example" in list_grids()
    assert len(load_grid("example").declare()) == 3


@pytest.fixture
def user_grids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    package = tmp_path / "labgrids"
    (package / "audio").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "audio" / "__init__.py").write_text("")
    (package / "audio" / "sweep.py").write_text(
        "from baton.xp.explore import explorer\n\n"
        "@explorer\ndef explore(launcher):\n    launcher(solver='example', seed=7)\n"
    )
    (package / "empty.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "labgrids"
    for name in [m for m in sys.modules if m.startswith("labgrids")]:
        del sys.modules[name]


def test_user_grid_packages_from_flag_or_env(user_grids: str, monkeypatch: pytest.MonkeyPatch):
    assert load_grid("audio/sweep", [user_grids]).declare() == [["solver=example", "seed=7"]]
    with pytest.raises(UserError, match="unknown grid 'audio/sweep'"):
        load_grid("audio/sweep")
    monkeypatch.setenv("BATON_GRID_PACKAGE", user_grids)
    assert load_grid("audio.sweep").declare() == [["solver=example", "seed=7"]]
    assert {"audio/sweep", "empty", "example"} <= set(list_grids())


def test_unknown_grid_and_grid_without_explorer(user_grids: str):
    with pytest.raises(UserError, match=r"unknown grid 'audio/swep' \(did you mean 'audio/sweep'\?\); grids: "):
        load_grid("audio/swep", [user_grids])
    with pytest.raises(UserError, match="must hold exactly one @explorer function, found 0"):
        load_grid("empty", [user_grids])
    with pytest.raises(UserError, match="grid package 'nolabgrids' .* cannot be imported"):
        load_grid("x", ["nolabgrids"])
