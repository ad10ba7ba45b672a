"""The project file (baton.toml): found like git, one more source after the command line and the
environment, for config folders, grid packages, imports and the XP root."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.config import compose_xp, config_dirs, load_env
from baton.config.project import find_project, load_project, parse_flat_toml
from baton.config.search import BATON_CONF, search_places, solver_search_places
from baton.errors import ConfigError, UserError
from baton.xp.explore import grid_packages, load_grid
from baton.xp.scaffold import template
from tests.config.conftest import write

SOLVER = "# @package _global_\ndefaults:\n  - /solver/default\n  - _self_\nsolver: example\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project folder: baton.toml, conf/solver/mine.yaml, a grid package; the working
    directory is a subfolder of it; sys.path and BATON_GRID_PACKAGE are restored afterwards."""
    root = tmp_path / "proj"
    write(root / "baton.toml", 'config_dirs = ["conf"]\ngrid_package = "projgrids"\nimports = ["projmod"]\n')
    write(root / "conf" / "solver" / "mine.yaml", SOLVER)
    write(root / "projmod.py", "LOADED = True\n")
    write(root / "projgrids" / "__init__.py", "")
    write(root / "projgrids" / "sweep.py", "from baton.xp.explore import explorer\n\n"
          "@explorer\ndef explore(launcher):\n    launcher(solver='mine', seed=3)\n")
    (root / "sub" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(root / "sub" / "deeper")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("BATON_GRID_PACKAGE", raising=False)
    yield root
    for name in [m for m in sys.modules if m.split(".")[0] in ("projgrids", "projmod")]:
        del sys.modules[name]


def test_found_in_a_parent_like_git(project: Path):
    found = find_project()
    assert found is not None and found.file == project / "baton.toml"
    assert found.config_dirs == (project / "conf",)
    assert found.grid_packages == ("projgrids",) and found.imports == ("projmod",)
    assert find_project(project.parent) is None


def test_the_nearest_file_wins(project: Path):
    write(project / "sub" / "baton.toml", 'imports = ["other"]\n')
    found = find_project()
    assert found is not None and found.file == project / "sub" / "baton.toml"
    assert found.imports == ("other",) and found.config_dirs == ()


def test_config_dirs_come_after_the_command_line_and_the_environment(project: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch):
    cli, env = tmp_path / "cli_conf", tmp_path / "env_conf"
    cli.mkdir()
    env.mkdir()
    monkeypatch.setenv("BATON_CONFIG_PATH", str(env))
    assert config_dirs([str(cli)]) == [BATON_CONF, cli, env, project / "conf"]
    assert compose_xp(["solver=mine"]).sig  # the project's solver option is found


def test_a_missing_config_dir_names_the_project_file(project: Path):
    write(project / "baton.toml", 'config_dirs = ["conf", "nope"]\n')
    with pytest.raises(ConfigError, match=rf"config dir '{project}/nope' \(from config_dirs in {project}/baton.toml\) does not exist"):
        config_dirs()


def test_grid_packages_come_after_the_command_line_and_the_environment(project: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BATON_GRID_PACKAGE", "envgrids")
    assert grid_packages(["cligrids"]) == [
        ("cligrids", "--package"),
        ("envgrids", "BATON_GRID_PACKAGE"),
        ("projgrids", f"grid_package in {project / 'baton.toml'}"),
        ("baton.grids", "baton"),
    ]
    monkeypatch.delenv("BATON_GRID_PACKAGE")
    # The project's folder goes on sys.path (last), so its grid package imports from a subfolder.
    assert load_grid("sweep").declare() == [["solver=mine", "seed=3"]]
    assert sys.path[-1] == str(project)


def test_imports_are_added_to_the_config_without_changing_the_signature(project: Path, monkeypatch: pytest.MonkeyPatch):
    inside = compose_xp(["solver=example", "imports=[json]"])
    assert list(inside.cfg.imports) == ["json", "projmod"]
    assert str(project) in sys.path
    monkeypatch.chdir(project.parent)
    outside = compose_xp(["solver=example", "imports=[json]"])
    assert list(outside.cfg.imports) == ["json"]
    assert inside.sig == outside.sig and inside.settings == outside.settings


def test_xp_root_command_line_then_environment_then_team_file_then_project(project: Path, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("BATON_XP_DIR")
    env = load_env()
    assert env.xp_root == str(project / "outputs")  # not ./outputs of the subfolder
    assert "project default" in env.xp_root_origin
    write(project / "baton.toml", 'config_dirs = ["conf"]\nxp_root = "runs"\n')
    assert load_env().xp_root == str(project / "runs")
    write(project / "conf" / "teams" / "default.yaml", f"clusters:\n  local:\n    xp_root: {tmp_path / 'team'}\n")
    assert load_env().xp_root == str(tmp_path / "team")
    monkeypatch.setenv("BATON_XP_DIR", str(tmp_path / "env"))
    assert load_env().xp_root == str(tmp_path / "env")
    assert load_env(xp_root=str(tmp_path / "cli")).xp_root == str(tmp_path / "cli")


@pytest.mark.parametrize(
    "text, message",
    [
        ('config_dir = ["conf"]\n', r"unknown key 'config_dir' in project file .*baton.toml \(did you mean 'config_dirs'\?\)"),
        ("imports = 3\n", r"'imports' in project file .* must be a string or a list of strings, got 3"),
        ('grid_package = "my-grids"\n', r"grid_package 'my-grids' .* is not a package name"),
        ("xp_root = [1]\n", r"'xp_root' in project file .* must be a string"),
        ("imports = [\n", r"(invalid TOML in|cannot read) project file .*baton.toml"),  # 3.10: no tomllib
    ],
)
def test_a_bad_project_file_is_one_line(project: Path, text: str, message: str):
    write(project / "baton.toml", text)
    with pytest.raises(ConfigError, match=message) as info:
        find_project()
    assert "\n" not in str(info.value)


def test_the_flat_reader_for_python_3_10_agrees_with_tomllib():
    tomllib = pytest.importorskip("tomllib")
    samples = [
        template("project.toml").replace("__NAME__", "mytask"),
        'config_dirs = [\n  "conf",   # ours\n  \'../shared conf\',\n]\nimports = []\nxp_root = "/x/\\u00e9"\n',
        "# only a comment\n\n",
        'grid_package="a.b"',
    ]
    for text in samples:
        assert parse_flat_toml(text) == tomllib.loads(text)


@pytest.mark.parametrize("text", ["[tool]\na = 'b'\n", "a = 1\n", "a = 'b' 'c'\n", 'a = "b"\na = "c"\n', "a = ['b'"])
def test_the_flat_reader_refuses_the_rest_in_one_line(text: str):
    with pytest.raises(ConfigError) as info:
        parse_flat_toml(text, "p/baton.toml")
    message = str(info.value)
    assert "p/baton.toml line" in message and "\n" not in message


def test_load_project_resolves_paths_against_its_folder(tmp_path: Path):
    path = write(tmp_path / "p" / "baton.toml", 'config_dirs = "conf"\ngrid_package = ["a", "b.c"]\n')
    project = load_project(path)
    assert project.config_dirs == (tmp_path / "p" / "conf",) and project.grid_packages == ("a", "b.c")
    assert project.xp_root is None and project.root == tmp_path / "p"


def test_messages_say_where_baton_looked_and_how_to_add_a_place(project: Path, monkeypatch: pytest.MonkeyPatch):
    places = search_places()
    assert f"{project / 'conf'} (config_dirs in {project / 'baton.toml'})" in places
    assert "--config-dir DIR, BATON_CONFIG_PATH or config_dirs in baton.toml" in places
    with pytest.raises(ConfigError, match=r"unknown option 'mien' .*\(did you mean 'mine'\?\).*config_dirs in "):
        compose_xp(["solver=mien"])
    with pytest.raises(UserError, match=r"unknown grid 'swep'.*searched projgrids \(grid_package in .*baton.toml\), "
                       r"baton.grids \(baton\); add a grid package with --package PKG, BATON_GRID_PACKAGE or grid_package"):
        load_grid("swep")
    assert "imports in " + str(project / "baton.toml") in solver_search_places(["projmod"])

    monkeypatch.chdir(project.parent)
    assert f"no baton.toml in {project.parent} or its parents" in search_places()
    with pytest.raises(UserError, match=rf"no baton.toml in {project.parent} or its parents; add a grid package"):
        load_grid("swep")
