"""Arguments and output shared by the subcommands."""

from __future__ import annotations

import argparse
import time
from typing import Any


def add_config_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="extra config folder (solver/, model/, ... like baton/conf); repeatable; "
        "BATON_CONFIG_PATH adds more",
    )


def console() -> Any:
    """A rich console; when output goes to a file or pipe, wide enough that tables keep whole
    signatures and deltas instead of folding them at 80 columns."""
    from rich.console import Console

    out = Console(highlight=False, soft_wrap=False)
    if not out.is_terminal:
        out = Console(highlight=False, soft_wrap=False, width=160)
    return out


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
