"""A crafted checkpoint in an XP folder runs no code through `baton run`, `info` or `export`;
`--trust` / `checkpoint.trusted=true` load a pickled object the user vouches for.

Real processes through the CLI: what a user (or an attacker who can write into the XP root)
would do."""

from __future__ import annotations

import pathlib
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

import baton
from baton.xp import status as st
from baton.xp.folder import XPFolder
from tests.xp.conftest import QUICK, baton_cli

ONE_EPOCH = [*QUICK, "optim.epochs=1", "logging.tensorboard=false"]


class TouchOnLoad:
    """Unpickling this creates `marker` (pickled as a call of pathlib.Path.touch: the class
    itself is not needed to load it, as with a real malicious file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def trained_xp(root: Path) -> Path:
    """An XP with a checkpoint that `baton run` will load: left resumable, as a preemption
    leaves it (a done XP has nothing to load: `baton run` only reports it)."""
    assert baton.run(ONE_EPOCH).status == "done"  # in this process: the CLI is what comes next
    (folder,) = root.glob("xps/*")
    st.write_exit(XPFolder(folder), st.KILLED, "stopped by SIGTERM during epoch 1")
    return folder


def add_to_checkpoint(folder: Path, **extra: Any) -> Path:
    """Keep the real checkpoint (format: baton header, sig, state) and add pickled objects."""
    path = folder / "checkpoint.th"
    data = torch.load(path, weights_only=False)
    assert data["format"] == "baton"
    torch.save({**data, **extra}, path)
    return path


def assert_one_line_refusal(stderr: str, path: Path) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"error: checkpoint {path} is refused")
    assert "--trust" in lines[0] and "checkpoint.trusted=true" in lines[0]


def test_a_crafted_checkpoint_runs_no_code(clean_env: Path, tmp_path: Path) -> None:
    folder = trained_xp(clean_env)
    marker = tmp_path / "code_ran"
    path = add_to_checkpoint(folder, payload=TouchOnLoad(marker))

    run = baton_cli("run", *ONE_EPOCH)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert_one_line_refusal(run.stderr, path)
    assert not marker.exists()

    # info still shows the XP; the checkpoint row says why it was not read.
    info = baton_cli("info", "-f", folder.name)
    assert info.returncode == 0, info.stderr
    assert f"{path} is refused" in info.stdout.replace("\n", " ")
    assert not marker.exists()

    output = tmp_path / "weights.pt"
    export = baton_cli("export", folder.name, "-o", str(output), "--source", "last")
    assert export.returncode == 2
    assert_one_line_refusal(export.stderr, path)
    assert not marker.exists() and not output.exists()

    # The payload was live: trusting the file is what runs it.
    assert baton_cli("info", "-f", folder.name, "--trust").returncode == 0
    assert marker.exists()


def test_trust_loads_a_benign_pickled_object(clean_env: Path, tmp_path: Path) -> None:
    folder = trained_xp(clean_env)
    path = add_to_checkpoint(folder, note=Fraction(1, 3))  # harmless, but not weights_only
    refused = baton_cli("run", *ONE_EPOCH)
    assert refused.returncode == 2 and "fractions.Fraction" in refused.stderr
    assert_one_line_refusal(refused.stderr, path)

    info = baton_cli("info", "-f", folder.name, "--trust")
    assert info.returncode == 0 and "epoch 1 (checkpoint.th)" in info.stdout, info.stdout
    output = tmp_path / "weights.pt"
    export = baton_cli("export", folder.name, "-o", str(output), "--source", "last", "--trust")
    assert export.returncode == 0, export.stderr
    assert set(torch.load(output, weights_only=True)) == {
        "net.0.weight", "net.0.bias", "net.3.weight", "net.3.bias"
    }
    run = baton_cli("run", *ONE_EPOCH, "checkpoint.trusted=true")  # same XP: not in the sig
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert f"XP {folder.name}" in run.stdout
