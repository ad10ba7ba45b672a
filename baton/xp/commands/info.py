"""`baton info -f SIG`: one XP at a glance; `-m` its metrics per epoch, `-t` its log.

A checkpoint that is unreadable, or refused because loading it could run code (see
`baton.checkpoint.read_checkpoint`), is shown as such on its row: the rest of the XP's
information is still worth seeing, and `--trust` loads a refused file the user trusts.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from baton.xp.commands.common import add_config_dir, add_trust, console, format_age, format_number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sig_pos", nargs="?", metavar="SIG", help="the XP's signature (or -f SIG)")
    parser.add_argument("-f", "--from_sig", dest="sig", metavar="SIG", help="the XP's signature")
    parser.add_argument("-m", "--metrics", action="store_true", help="metrics per epoch as a table")
    parser.add_argument("-t", "--tail", action="store_true", help="print the end of solver.log")
    parser.add_argument("-n", "--lines", type=int, default=20, help="lines shown by -t (default 20)")
    add_trust(parser)
    add_config_dir(parser)


def main(args: argparse.Namespace) -> int:
    from baton.errors import UserError
    from baton.xp.folder import SOLVER_LOG, find_xp
    from baton.xp.launch import xp_root
    from baton.xp.status import summarize

    sig = args.sig or args.sig_pos
    if not sig:
        raise UserError("baton info: which XP? give -f SIG (`baton ls` lists them)")
    folder = find_xp(sig, xp_root(args.config_dir))
    summary = summarize(folder)
    out = console()
    rows = [
        ("sig", summary.sig),
        ("delta", summary.delta_text),
        ("status", summary.status + (f" ({summary.message})" if summary.message else "")),
        ("folder", str(summary.folder)),
        ("epochs", f"{summary.epoch} finished, last activity {format_age(summary.age)} ago"),
        ("checkpoint", _checkpoint_epoch(folder.path, trusted=args.trust)),
        ("best", f"{summary.best_key} {format_number(summary.best)}" if summary.best is not None else "-"),
    ]
    for stage, metrics in (summary.history[-1] if summary.history else {}).items():
        rows.append((f"last {stage}", " | ".join(f"{k} {format_number(v)}" for k, v in metrics.items())))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:  # soft_wrap: a long value (an error naming a file) stays one line
        out.print(f"{name:<{width}}  {value}", markup=False, soft_wrap=True)
    if args.metrics:
        out.print(metrics_table(summary.history))
    if args.tail:
        log = folder.path / SOLVER_LOG
        lines = log.read_text(errors="replace").splitlines()[-args.lines:] if log.is_file() else []
        out.rule(f"{SOLVER_LOG} (last {len(lines)} lines)")
        for line in lines:
            out.print(line, markup=False)
    return 0


def _checkpoint_epoch(folder: Path, *, trusted: bool = False) -> str:
    from baton.checkpoint import read_checkpoint
    from baton.errors import UnsafeCheckpointError, UserError

    path = folder / "checkpoint.th"
    if not path.is_file():
        return "none"
    try:
        return f"epoch {read_checkpoint(path, trusted=trusted)['epoch']} ({path.name})"
    except UnsafeCheckpointError as exc:
        return str(exc)  # "checkpoint ... is refused: ...; ... --trust ..."
    except (UserError, KeyError, OSError) as exc:
        return f"unreadable: {exc}"


def metrics_table(history: Sequence[dict[str, dict[str, float]]]):
    """Epochs as rows, 'stage.metric' as columns, in the order they first appear."""
    from rich.table import Table

    columns: list[tuple[str, str]] = []
    for entry in history:
        for stage, metrics in entry.items():
            for name in metrics:
                if (stage, name) not in columns:
                    columns.append((stage, name))
    table = Table(title="metrics per epoch")
    table.add_column("epoch", justify="right")
    for stage, name in columns:
        table.add_column(f"{stage}.{name}", justify="right")
    for epoch, entry in enumerate(history, start=1):
        table.add_row(str(epoch), *(format_number(entry.get(s, {}).get(n)) for s, n in columns))
    return table
