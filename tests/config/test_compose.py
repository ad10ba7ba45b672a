"""compose(): what a solver gets, and the one-line errors a user gets instead."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError

from baton.config import compose, compose_xp
from baton.errors import ConfigError


def test_compose_fills_sig_folder_and_env(clean_env: Path):
    cfg = compose(["solver=example", "optim.lr=0.01"])
    assert cfg.optim.lr == 0.01
    assert cfg.xp.root == str(clean_env)
    assert cfg.xp.folder == str(clean_env / "xps" / cfg.xp.sig)
    assert cfg.env.cluster == "local" and cfg.env.team == "default"
    assert OmegaConf.is_struct(cfg)
    with pytest.raises(ConfigAttributeError):
        cfg.optim.lrr = 1  # struct mode: a typo never creates a key


def test_compose_resolves_interpolations():
    cfg = compose(["solver=example", "+derived=${optim.lr}"])
    assert cfg.derived == cfg.optim.lr


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.lrr' \(did you mean 'optim.lr'\?\)"):
        compose(["solver=example", "optim.lrr=0.1"])


def test_unknown_group_option_lists_the_options():
    with pytest.raises(ConfigError) as info:
        compose(["solver=exampel"])
    message = str(info.value)
    assert "unknown option 'exampel' for config group 'solver'" in message
    assert "did you mean 'example'" in message and "options: " in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "override, expected",
    [
        ("optim.lr", "malformed override 'optim.lr'"),
        ("=3", "no key before '='"),
        ("seed=1,2", "is a sweep"),
        ("optim.lr=fast", "config key 'optim.lr' expects a number"),
        ("optim.epochs=2.5", "config key 'optim.epochs' expects an int"),
        ("optim.ema.use=1", "expects a bool"),
        ("optim.betas=0.9", "expects a list"),
    ],
)
def test_bad_overrides_are_one_line_errors(override: str, expected: str):
    with pytest.raises(ConfigError) as info:
        compose(["solver=example", override])
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_integral_float_for_an_int_key_becomes_an_int():
    cfg = compose(["solver=example", "optim.epochs=3.0"])
    assert cfg.optim.epochs == 3 and isinstance(cfg.optim.epochs, int)


def test_no_solver_lists_the_solvers():
    with pytest.raises(ConfigError, match=r"no solver chosen: add solver=<name>; options: .*example"):
        compose([])


def test_missing_value_names_the_key_and_the_group_file(project_conf: Path):
    with pytest.raises(ConfigError) as info:
        compose(["solver=toy", "model=unfinished"], config_dir=str(project_conf))
    assert "config key 'model.layers' has no value (???): set it in model/unfinished.yaml" in str(info.value)
    cfg = compose(["solver=toy", "model=unfinished", "model.layers=3"], config_dir=str(project_conf))
    assert cfg.model.layers == 3


def test_user_config_dirs_from_flag_and_env(project_conf: Path, monkeypatch: pytest.MonkeyPatch):
    assert compose(["solver=toy"], config_dir=str(project_conf)).model.hidden == 16
    with pytest.raises(ConfigError, match="unknown option 'toy'"):
        compose(["solver=toy"])
    monkeypatch.setenv("BATON_CONFIG_PATH", str(project_conf))
    assert compose(["solver=toy", "model=big"]).model.hidden == 256


def test_missing_config_dir_is_an_error(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"config dir '.*nowhere' \(from --config-dir\) does not exist"):
        compose(["solver=example"], config_dir=str(tmp_path / "nowhere"))


def test_rightmost_override_wins():
    xp = compose_xp(["solver=example", "optim.lr=0.1", "optim.lr=0.2"])
    assert xp.cfg.optim.lr == 0.2
    assert xp.overrides == ["solver=example", "optim.lr=0.2"]


def test_adding_and_deleting_keys_are_in_the_delta():
    xp = compose_xp(["solver=example", "+extra.depth=2", "~task.dropout"])
    assert ("extra.depth", 2) in xp.delta
    assert ("task.dropout", "<removed>") in xp.delta


def test_group_the_solver_does_not_use_must_be_added_with_plus(project_conf: Path):
    with pytest.raises(ConfigError, match=r"config group 'model' is not in the defaults of this solver: add it with \+model=big"):
        compose(["solver=example", "model=big"], config_dir=str(project_conf))
    cfg = compose(["solver=example", "+model=big"], config_dir=str(project_conf))
    assert cfg.model.layers == 8


def test_an_excluded_group_is_no_setting_of_the_run() -> None:
    """Drift compares settings: a group listed in xp.exclude (a per-cluster dataset) is not one."""
    from baton.config import compose_xp

    kept = compose_xp(["solver=compression/debug"]).settings
    assert kept["<group dset>"] == "synth"
    dropped = compose_xp(["solver=compression/debug", "xp.exclude=[xp.*,dset]"]).settings
    assert "<group dset>" not in dropped
