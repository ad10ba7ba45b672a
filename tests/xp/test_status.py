"""An XP's state, read from its files: what `ls`, `info` and grids show."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from baton.errors import UserError
from baton.xp import status as st
from baton.xp.folder import XPFolder, all_xps, find_xp
from baton.xp.lock import Heartbeat, XPLock


def make_xp(root: Path, sig: str, history: list[dict] | None = None) -> XPFolder:
    folder = XPFolder(root / "xps" / sig)
    folder.write_argv(["solver=example", f"label={sig}"])
    st.write_delta(folder, [("solver", "example"), ("label", sig)])
    if history is not None:
        (folder.path / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    return folder


def test_status_follows_the_life_of_a_run(tmp_path: Path):
    folder = make_xp(tmp_path, "aaaa1111")
    assert st.xp_status(folder) == st.NEW
    with XPLock(folder.path), Heartbeat(folder.path):
        assert st.xp_status(folder) == st.RUNNING
        st.write_exit(folder, st.DONE)
    assert st.xp_status(folder) == st.DONE
    st.clear_exit(folder)
    assert st.xp_status(folder) == st.KILLED  # ran, left no exit record
    st.write_exit(folder, st.FAILED, "RuntimeError: boom")
    assert st.xp_status(folder) == st.FAILED
    assert st.summarize(folder).message == "RuntimeError: boom"


def test_summary_reads_epochs_best_and_metrics(tmp_path: Path):
    history = [
        {"train": {"loss": 3.0}, "valid": {"loss": 2.0}},
        {"train": {"loss": 2.0}, "valid": {"loss": 1.0}},
        {"train": {"loss": 1.0}, "valid": {"loss": 1.5}},
    ]
    folder = make_xp(tmp_path, "bbbb2222", history)
    with open(folder.path / "history.jsonl", "a") as handle:
        handle.write('{"train": {"lo')  # a torn last line, as after a crash mid-write
    summary = st.summarize(folder)
    assert summary.epoch == 3
    assert (summary.best_key, summary.best) == ("valid.loss", 1.0)
    assert summary.metric("train.loss") == 1.0 and summary.metric("valid.nothing") is None
    assert summary.delta_text == "label=bbbb2222 solver=example"


def test_find_xp_by_sig_or_unique_prefix(tmp_path: Path):
    make_xp(tmp_path, "abcd0001")
    make_xp(tmp_path, "abcd0002")
    make_xp(tmp_path, "ffff0003")
    assert find_xp("ffff0003", tmp_path).sig == "ffff0003"
    assert find_xp("ff", tmp_path).sig == "ffff0003"
    with pytest.raises(UserError, match="sig prefix 'abcd' matches 2 XPs"):
        find_xp("abcd", tmp_path)
    with pytest.raises(UserError, match=r"unknown sig 'ffff0004': .*did you mean 'ffff0003'"):
        find_xp("ffff0004", tmp_path)
    assert sorted(xp.sig for xp in all_xps(tmp_path)) == ["abcd0001", "abcd0002", "ffff0003"]
