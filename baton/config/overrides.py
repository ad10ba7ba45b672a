"""Command-line overrides (`optim.lr=1e-3`, `model=small`, `+extra=1`, `~key`): parse, check, format.

Hydra's own grammar parses them; this module turns its exceptions into one-line errors that name
the override, and writes Python values back as override strings for grids.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baton.config.search import is_group
from baton.errors import ConfigError


@dataclass(frozen=True)
class Override:
    """One parsed override. `is_group` tells a group choice from a value."""

    text: str
    key: str
    value: Any
    prefix: str  # '', '+', '++' or '~'
    package: str | None
    is_group: bool


def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def parse_overrides(overrides: Sequence[str], dirs: Sequence[Path]) -> list[Override]:
    """Parse every override, rejecting malformed ones and sweeps with a one-line error.

    Raises:
        ConfigError: names the override and what is wrong with it.
    """
    from hydra.errors import HydraException

    parser = _parser()
    parsed = []
    for text in overrides:
        try:
            raw = parser.parse_override(text)
        except HydraException as exc:
            reason = str(exc).strip().splitlines()[0]
            raise ConfigError(
                f"malformed override '{text}': {reason}; expected key=value, e.g. optim.lr=1e-3"
            ) from None
        if not raw.key_or_group:
            raise ConfigError(f"malformed override '{text}': no key before '='")
        if raw.is_sweep_override():
            raise ConfigError(
                f"override '{text}' is a sweep; quote a string with commas "
                f"(key='a,b'), write a list as key=[a,b], or sweep in a grid (baton grid)"
            )
        if raw.is_delete():
            prefix = "~"
        elif raw.is_force_add():
            prefix = "++"
        elif raw.is_add():
            prefix = "+"
        else:
            prefix = ""
        key = raw.key_or_group
        group = "." not in key and is_group(key, dirs)
        parsed.append(
            Override(
                text=text,
                key=key,
                value=None if raw.is_delete() else raw.value(),
                prefix=prefix,
                package=raw.package,
                is_group=group,
            )
        )
    return parsed


def dedupe(overrides: Iterable[str]) -> list[str]:
    """Drop plain overrides that a later plain override of the same key replaces (rightmost wins).

    `run -f SIG a=b` appends to SIG's stored overrides; this keeps the stored list short and
    readable. Prefixed overrides ('+', '++', '~') are kept as given: their order matters.
    """
    overrides = list(overrides)
    last: dict[str, int] = {}
    for index, text in enumerate(overrides):
        key = _plain_key(text)
        if key is not None:
            last[key] = index
    return [
        text
        for index, text in enumerate(overrides)
        if (key := _plain_key(text)) is None or last[key] == index
    ]


def _plain_key(text: str) -> str | None:
    if text.startswith(("+", "~")) or "=" not in text:
        return None
    return text.split("=", 1)[0].strip()


def format_value(value: Any) -> str:
    """Write a Python value as Hydra override syntax, so that parsing it gives `value` back."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _format_string(value)
    if isinstance(value, Mapping):
        items = ",".join(f"{k}:{format_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {type(value).__name__} value {value!r} as a config override")


def _format_string(value: str) -> str:
    from hydra.errors import HydraException

    try:
        if _parser().parse_override(f"k={value}").value() == value:
            return value
    except HydraException:
        pass
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def to_overrides(*args: str | Mapping[str, Any], **kwargs: Any) -> list[str]:
    """Turn 'k=v' strings and (nested) dicts of values into override strings, in order.

    `to_overrides({"optim": {"lr": 1e-3}}, model="small")` gives
    `['optim.lr=0.001', 'model=small']`.
    """
    result: list[str] = []
    for arg in [*args, kwargs]:
        if isinstance(arg, str):
            result.append(arg)
        elif isinstance(arg, Mapping):
            result.extend(f"{k}={format_value(v)}" for k, v in _flatten(arg))
        else:
            raise ConfigError(
                f"overrides are 'key=value' strings or dicts, got {type(arg).__name__} {arg!r}"
            )
    return result


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            items.extend(_flatten(value, full + "."))
        else:
            items.append((full, value))
    return items
