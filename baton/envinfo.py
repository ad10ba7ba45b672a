"""`env.log`: what ran, where, with which code; one block appended per run of the XP."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import baton


def describe(argv: Sequence[str], config_dirs: Sequence[Path]) -> str:
    lines = [
        f"=== {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"command: baton run {' '.join(argv)}",
        *environment_lines(),
        f"config dirs: {', '.join(str(d) for d in config_dirs)}",
    ]
    return "\n".join(lines) + "\n"


def environment_lines() -> list[str]:
    """Host, python, torch, CUDA and the code's git commits: what a rerun must match."""
    import torch

    cuda = torch.version.cuda if torch.cuda.is_available() else "not available"
    devices = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return [
        f"host: {socket.gethostname()}",
        f"python: {sys.version.split()[0]} ({sys.executable})",
        f"platform: {platform.platform()}",
        f"torch: {torch.__version__}",
        f"cuda: {cuda}" + (f" [{devices}]" if devices else ""),
        f"baton: {baton.__version__} at {Path(baton.__file__).parent} ({_git(Path(baton.__file__).parent)})",
        f"cwd: {Path.cwd()} ({_git(Path.cwd())})",
    ]


def _git(folder: Path) -> str:
    """'git <commit>[ dirty]' for the repository holding `folder`, or 'no git'."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return "no git"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return f"git {commit.stdout.strip()}{' dirty' if dirty.stdout.strip() else ''}"
    except (OSError, subprocess.SubprocessError):
        return "no git"
