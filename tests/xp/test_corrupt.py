"""One damaged XP folder never breaks the commands for the others."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from baton.errors import UserError
from baton.xp.folder import XPFolder
from tests.xp.conftest import baton_cli, copy_xps


def test_ls_and_info_show_a_corrupt_xp(clean_env: Path, quick_xps: list[Path]) -> None:
    copy_xps(quick_xps, clean_env)
    first, second = sorted(clean_env.glob("xps/*"))
    (first / "config.yaml").write_text("optim: {lr: [1\n")
    listing = baton_cli("ls")
    assert listing.returncode == 0, listing.stderr
    assert "corrupt" in listing.stdout and second.name in listing.stdout
    info = baton_cli("info", "-f", first.name)
    assert info.returncode == 0 and "config.yaml is corrupt" in info.stdout.replace("\n", "")
    (first / ".argv.json").write_text('["solver=exa')
    rerun = baton_cli("run", "-f", first.name)
    assert rerun.returncode == 2 and ".argv.json is corrupt" in rerun.stderr


def test_a_bad_history_line_shows_that_xp_corrupt_and_ls_goes_on(clean_env: Path, quick_xps: list[Path]) -> None:
    copy_xps(quick_xps, clean_env)
    first, second = sorted(clean_env.glob("xps/*"))
    history = first / "history.jsonl"
    lines = history.read_text().splitlines()
    lines[1] = "null"  # valid JSON, not an epoch
    history.write_text("\n".join(lines) + "\n")
    listing = baton_cli("ls")
    assert listing.returncode == 0 and "Traceback" not in listing.stderr, listing.stderr
    rows = {line.split()[1]: line for line in listing.stdout.splitlines() if line.startswith("│ ")}
    assert "corrupt" in rows[first.name] and "done" in rows[second.name]
    assert "solver=example task.num_train=64" in rows[first.name]  # its delta still names it
    assert f"1 corrupt XP(s); `baton info -f {first.name}` names the damaged file" in listing.stdout
    info = baton_cli("info", "-f", first.name)
    assert info.returncode == 0 and not info.stderr, info.stderr
    (status,) = [line for line in info.stdout.splitlines() if line.startswith("status")]
    assert f"corrupt ({history} line 2 is corrupt (a JSON null, not an object); fix or delete that line" in status


@pytest.mark.parametrize(
    "content, problem",
    [
        (b'{"train": {"loss": 1}}\n[1, 2]\n{"train": {"loss": 2}}\n', "line 2 is corrupt (a JSON array, not an object)"),
        (b'{"train": {"loss": 1}}\n{"train": 5}\n', "line 2 is corrupt (stage 'train' holds a JSON number"),
        (b'{"train": {"loss": 1}}\n{"tr\n{"train": {"loss": 2}}\n', "line 2 is corrupt (invalid JSON: "),
        (b'{"train": {"loss": 1}}\n\xff\xfe\n', "line 2 is corrupt (not UTF-8 at byte 0)"),
    ],
    ids=["array", "stage-not-object", "bad-json-inside", "not-utf8"],
)
def test_history_names_the_bad_line(tmp_path: Path, content: bytes, problem: str) -> None:
    (tmp_path / "history.jsonl").write_bytes(content)
    with pytest.raises(UserError, match=re.escape(f"{tmp_path / 'history.jsonl'} {problem}")):
        XPFolder(tmp_path).history()


def test_history_skips_a_torn_last_line_and_blank_lines(tmp_path: Path) -> None:
    (tmp_path / "history.jsonl").write_bytes(b'{"train": {"loss": 1}}\n\n{"train": {"loss": 2}}\n{"tra')
    assert XPFolder(tmp_path).history() == [{"train": {"loss": 1}}, {"train": {"loss": 2}}]
