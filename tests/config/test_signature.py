"""Signatures: by value, order-free, blind to excluded keys, and stable across processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.config import compose_xp
from baton.config.signature import signature


def sig(*overrides: str, config_dir: Path | None = None) -> str:
    return compose_xp(list(overrides), config_dir=config_dir).sig


def test_order_of_overrides_does_not_matter():
    assert sig("solver=example", "optim.lr=0.01", "seed=3") == sig("seed=3", "optim.lr=0.01", "solver=example")


def test_same_value_spelled_differently_gives_same_sig():
    assert sig("solver=example", "optim.lr=1e-3") == sig("solver=example", "optim.lr=0.001")
    # A float key given an int stays a float, so 1 and 1.0 are one value.
    assert sig("solver=example", "optim.lr=1") == sig("solver=example", "optim.lr=1.0")


def test_restating_a_default_gives_no_delta():
    plain = compose_xp(["solver=example"])
    restated = compose_xp(["solver=example", "optim.epochs=4", "seed=42"])  # example's values
    assert restated.sig == plain.sig
    assert restated.delta == [("solver", "example")]


def test_excluded_keys_do_not_change_the_sig():
    assert sig("solver=example", "dataset.num_workers=3", "logging.level=DEBUG", "device=auto") == sig(
        "solver=example"
    )


def test_label_forces_a_new_sig():
    assert sig("solver=example", "label=x") != sig("solver=example")


def test_value_change_gives_a_new_sig():
    assert sig("solver=example", "optim.lr=0.01") != sig("solver=example")


def test_group_choice_gives_a_new_sig_but_restating_it_does_not(project_conf: Path):
    default = compose_xp(["solver=toy"], config_dir=project_conf)
    assert default.delta == [("solver", "toy")]
    assert sig("solver=toy", "model=small", config_dir=project_conf) == default.sig
    big = compose_xp(["solver=toy", "model=big"], config_dir=project_conf)
    assert big.sig != default.sig
    # The model's values come with the choice: they are not listed leaf by leaf.
    assert sorted(big.delta) == [("model", "big"), ("solver", "toy")]


def test_value_inside_a_chosen_group_is_a_leaf_delta(project_conf: Path):
    xp = compose_xp(["solver=toy", "model=big", "model.layers=3"], config_dir=project_conf)
    assert sorted(xp.delta) == [("model", "big"), ("model.layers", 3), ("solver", "toy")]


def test_golden_signatures():
    # Literal values, each the first 8 hex digits of `printf '%s' '<json>' | sha1sum` over the
    # canonical JSON in the comment. A change here breaks every stored XP: never update them to
    # make a test pass.
    # [["solver","example"]]
    assert signature([("solver", "example")]) == "8506efbc"
    assert sig("solver=example") == "8506efbc"
    # [["label","golden"],["optim.lr",0.01],["solver","example"]]
    assert sig("solver=example", "optim.lr=1e-2", "label=golden") == "c1001596"
    # [["flag",true],["model",null],["optim.betas",[0.8,0.99]]]
    assert signature([("optim.betas", [0.8, 0.99]), ("model", None), ("flag", True)]) == "ce709c4b"


@pytest.mark.parametrize("excluded", ["xp.root=/elsewhere", "checkpoint.keep_last=5", "num_threads=2"])
def test_more_excluded_keys(excluded: str):
    assert sig("solver=example", excluded) == sig("solver=example")


def test_integral_floats_sign_like_ints_where_the_default_gives_no_type():
    # optim.max_norm defaults to null and optim.betas is a list: no type to coerce to.
    assert sig("solver=example", "optim.max_norm=1") == sig("solver=example", "optim.max_norm=1.0")
    assert sig("solver=example", "optim.updates_per_epoch=10") == sig("solver=example", "optim.updates_per_epoch=10.0")
    assert sig("solver=example", "optim.betas=[0.9,1]") == sig("solver=example", "optim.betas=[0.9,1.0]")
    assert sig("solver=example", "optim.max_norm=1") != sig("solver=example", "optim.max_norm=1.5")
