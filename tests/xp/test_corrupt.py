"""One damaged XP folder never breaks the commands for the others."""

from __future__ import annotations

from pathlib import Path

from tests.xp.conftest import QUICK, baton_cli


def test_ls_and_info_show_a_corrupt_xp(clean_env: Path) -> None:
    assert baton_cli("run", *QUICK).returncode == 0
    assert baton_cli("run", *QUICK, "optim.lr=0.01").returncode == 0
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
