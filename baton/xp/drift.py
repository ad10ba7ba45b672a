"""Config drift: an XP resumes only under the config it ran with.

An XP's signature is the delta from the defaults, so editing a default in a YAML file keeps the
signature while changing what the run does. Before an XP that has run resumes, the newly
composed settings (`Composition.settings`: every leaf as composed, minus `xp.exclude`) are
compared with the copy stored when it last started (`.settings.json`). A difference is refused
on one line naming the keys, old -> new, and the ways out; `--accept-config-change` goes on and
appends the change to `config_changes.jsonl` in the XP folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from baton.atomic import write_text_atomic
from baton.config import Composition
from baton.config.overrides import format_value
from baton.errors import ConfigError
from baton.xp.folder import HISTORY, XPFolder, read_json

SETTINGS = ".settings.json"
CHANGES = "config_changes.jsonl"
_ABSENT = "<absent>"
_SHOWN = 5  # changes named in the one-line refusal


def write_settings(folder: XPFolder, xp: Composition) -> None:
    write_text_atomic(folder.path / SETTINGS, json.dumps(xp.settings, sort_keys=True, default=str) + "\n")


def changes(stored: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, old, new) for every setting that differs, added or removed, sorted by key.

    A key that a newer baton added with a null default (an option that is off) is no change:
    an XP started before the key existed ran exactly as one with it at null."""
    new = json.loads(json.dumps(new, default=str))  # compared as stored: through JSON
    keys = sorted(set(stored) | set(new))
    found = [(k, stored.get(k, _ABSENT), new.get(k, _ABSENT)) for k in keys]
    return [(k, old, now) for k, old, now in found if old != now and not (old == _ABSENT and now is None)]


def has_run(folder: XPFolder) -> bool:
    return any(folder.path.glob("checkpoint*.th")) or (folder.path / HISTORY).exists()


def check_config_drift(folder: XPFolder, xp: Composition, *, accept: bool) -> bool:
    """Refuse to resume `folder` under settings other than those it ran with. Returns True when
    a change was accepted (and recorded).

    Raises:
        ConfigError: the settings changed and `accept` is false; nothing is written.
    """
    path = folder.path / SETTINGS
    if not path.is_file() or not has_run(folder):
        return False  # a new XP, or one that ran before baton kept its settings: nothing to compare
    found = changes(read_json(path), xp.settings)
    if not found:
        return False
    if not accept:
        shown = ", ".join(f"{k} {format_value(old)} -> {format_value(new)}" for k, old, new in found[:_SHOWN])
        more = f" and {len(found) - _SHOWN} more" if len(found) > _SHOWN else ""
        raise ConfigError(
            f"XP {xp.sig} ran with another config: {shown}{more} (an edited default keeps the "
            "signature); --clear to start it afresh, label=NAME for a new XP, or "
            "--accept-config-change to resume it under the new config"
        )
    record = {"time": time.time(), "changes": [{"key": k, "old": old, "new": new} for k, old, new in found]}
    with open(folder.path / CHANGES, "a") as handle:
        handle.write(json.dumps(record, default=str) + "\n")
    return True
