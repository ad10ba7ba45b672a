"""Writing Python values as overrides (for grids) and reading them back."""

from __future__ import annotations

import pytest

from baton.config.overrides import dedupe, format_value, parse_overrides, to_overrides
from baton.config.search import config_dirs


@pytest.mark.parametrize(
    "value",
    [1e-3, 0.1, 3, -2, True, None, "adam", "hello world", "a,b", "it's", "${optim.lr}", "1e-3",
     "true", [1, 2], ["a", "b c"], {"x": 1, "y": [1.5]}, float("inf")],
)
def test_format_value_round_trips(value):
    parsed = parse_overrides([f"key={format_value(value)}"], config_dirs())[0]
    assert parsed.value == value


def test_to_overrides_flattens_dicts_in_order():
    assert to_overrides("solver=example", {"optim": {"lr": 1e-3, "ema": {"use": True}}}, label="x") == [
        "solver=example",
        "optim.lr=0.001",
        "optim.ema.use=true",
        "label=x",
    ]


def test_dedupe_keeps_the_rightmost_plain_override():
    assert dedupe(["a=1", "b=2", "a=3", "+c=1", "+c=2"]) == ["b=2", "a=3", "+c=1", "+c=2"]


def test_groups_are_told_from_values():
    parsed = parse_overrides(["solver=example", "optim.lr=1"], config_dirs())
    assert [p.is_group for p in parsed] == [True, False]
