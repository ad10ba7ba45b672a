"""An XP's identity: a short hash of how its config differs from the defaults, by value.

The delta is every leaf that differs between the config composed with the group choices only
and the config composed with all overrides, plus each group choice that differs from the
solver's own defaults (the solver choice itself is always in). Because it is by value, restating
a default adds nothing and `1e-3` equals `0.001`. Keys matching `xp.exclude` (fnmatch patterns)
are dropped. Values are compared before interpolations and `//reference` paths are resolved, so
one XP keeps its signature on every cluster.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Delta = list[tuple[str, Any]]

_REMOVED = "<removed>"


def flatten(container: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> leaf value. Lists are leaves; an empty dict is a leaf `{}`."""
    if isinstance(container, Mapping) and container:
        flat: dict[str, Any] = {}
        for key, value in container.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: container}


def leaf_delta(base: Mapping[str, Any], full: Mapping[str, Any]) -> Delta:
    """Leaves of `full` that differ from `base` (both plain containers), as (key, value)."""
    flat_base, flat_full = flatten(base), flatten(full)
    delta: Delta = []
    for key, value in flat_full.items():
        if key not in flat_base or not _equal(flat_base[key], value):
            delta.append((key, value))
    delta.extend((key, _REMOVED) for key in flat_base if key not in flat_full)
    return delta


def _equal(a: Any, b: Any) -> bool:
    # 1 == True in Python; a config where `true` becomes `1` is a different config.
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return a == b


def choice_delta(reference: Mapping[str, str | None], chosen: Mapping[str, str | None]) -> Delta:
    """Group choices that differ from `reference`; the solver choice is always kept."""
    delta: Delta = []
    for group, option in chosen.items():
        if group == "solver" or reference.get(group) != option:
            delta.append((group, option))
    return delta


def exclude(delta: Iterable[tuple[str, Any]], patterns: Sequence[str]) -> Delta:
    """Drop entries whose key matches any fnmatch pattern (`xp.*`, `device`)."""
    return [(k, v) for k, v in delta if not any(fnmatch.fnmatchcase(k, p) for p in patterns)]


def signature(delta: Iterable[tuple[str, Any]]) -> str:
    """First 8 hex digits of sha1 over the JSON of the sorted delta.

    JSON writes floats with their shortest round-trip repr and keys sorted, so the result is the
    same in every process and Python version (a golden test pins it).
    """
    items = sorted(([key, _canonical(value)] for key, value in delta), key=lambda item: item[0])
    text = json.dumps(items, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def _canonical(value: Any) -> Any:
    """Numbers by value: an integral float is written as the int (`1.0` -> `1`), in lists too.

    Overrides of keys with a typed default are coerced to its type before this; keys whose
    default is null (`optim.max_norm`) or a list (`optim.betas`) get no type, and `1` and `1.0`
    must still sign alike.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


def format_delta(delta: Iterable[tuple[str, Any]]) -> str:
    """'optim.lr=0.01 solver=example': the delta as the overrides a human would type."""
    from baton.config.overrides import format_value

    return " ".join(f"{k}={format_value(v)}" for k, v in sorted(delta, key=lambda kv: kv[0]))
