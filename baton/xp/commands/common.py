"""Arguments and output shared by the subcommands."""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable
from typing import Any

# What a command returns when its reader went away (`baton ls | head`): 128 + SIGPIPE, what a
# shell reports for a writer that SIGPIPE stopped (`yes | head`).
CLOSED_PIPE_EXIT = 141


def add_config_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="extra config folder (solver/, model/, ... like baton/conf); repeatable; "
        "BATON_CONFIG_PATH and config_dirs in the project's baton.toml add more",
    )


def run_overrides(args: argparse.Namespace, command: str) -> list[str]:
    """The overrides a run-like command trains with: `-f SIG`'s stored ones, then those typed
    after it (rightmost wins). `--nproc` without `-d` is refused here, for every such command."""
    from baton.errors import UserError
    from baton.xp.launch import replay_overrides

    if args.nproc is not None and not args.distrib:
        raise UserError(f"--nproc goes with -d: baton {command} -d --nproc N ...")
    overrides = list(args.overrides)
    if args.sig:
        overrides = replay_overrides(args.sig, overrides, args.config_dir)
    return overrides


def console() -> Any:
    """A rich console; when output goes to a file or pipe, wide enough that tables keep whole
    signatures and deltas instead of folding them at 80 columns. A closed pipe ends the command
    quietly (see `closed_pipe`)."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise SystemExit(closed_pipe())

    out = _Console(highlight=False, soft_wrap=False)
    if not out.is_terminal:
        out = _Console(highlight=False, soft_wrap=False, width=160)
    return out


def closed_pipe() -> int:
    """What to do once stdout's reader is gone (`baton ls | head`, `... | less` then q): point
    stdout at /dev/null, so the interpreter's last flush at exit cannot fail again and print
    a traceback, and return CLOSED_PIPE_EXIT. Nothing is printed: the reader asked for no more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no file descriptor (stdout replaced in-process)
        pass
    return CLOSED_PIPE_EXIT


def quiet_on_closed_pipe(main: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A command's `main` that exits quietly with CLOSED_PIPE_EXIT when stdout's reader is gone,
    instead of a BrokenPipeError traceback. stdout is flushed inside, so output still buffered
    when `main` returns fails here, not at interpreter exit."""

    @functools.wraps(main)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            code = main(args)
            sys.stdout.flush()
            return code
        except BrokenPipeError:
            return closed_pipe()

    return wrapper


def format_age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def format_number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def format_time(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


STATUS_STYLE = {"running": "cyan", "done": "green", "failed": "red", "killed": "yellow", "new": "dim",
                "corrupt": "bold red"}


def add_trust(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust",
        action="store_true",
        help="load a checkpoint that holds pickled objects beyond tensors and plain values "
        "(refused by default: unpickling them can run code from the file; only for files you trust)",
    )
