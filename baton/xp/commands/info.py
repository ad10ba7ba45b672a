"""`baton info -f SIG`: one XP at a glance; `-m` its metrics per epoch, `-t` its log.

`-m` shows every metric; `--metrics valid.loss,mel*` only the columns those names match: a
name is an fnmatch pattern of `stage.metric`, or of the bare metric name (any stage). Headers
are two lines (stage, then metric), and a table wider than the console is split into several,
each with the epoch column, so no header is cut.

A checkpoint that is unreadable, or refused because loading it could run code (see
`baton.checkpoint.read_checkpoint`), is shown as such on its row: the rest of the XP's
information is still worth seeing, and `--trust` loads a refused file the user trusts.
"""

from __future__ import annotations

import argparse
import fnmatch
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from baton.xp.commands.common import (
    add_config_dir,
    add_trust,
    console,
    format_age,
    format_number,
    quiet_on_closed_pipe,
)

ALL = "*"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sig_pos", nargs="?", metavar="SIG", help="the XP's signature (or -f SIG)")
    parser.add_argument("-f", "--from_sig", dest="sig", metavar="SIG", help="the XP's signature")
    parser.add_argument(
        "-m", "--metrics", nargs="?", const=ALL, default=None, metavar="NAMES",
        help="metrics per epoch as a table; NAMES (comma-separated, e.g. valid.loss,mel*) picks "
        "the columns: 'stage.metric' or a bare metric name, fnmatch patterns allowed",
    )
    parser.add_argument(
        "--plot", metavar="FILE.png",
        help="draw the curves (the -m columns; all without -m) into an image (needs matplotlib)",
    )
    parser.add_argument("-t", "--tail", action="store_true", help="print the end of solver.log")
    parser.add_argument("-n", "--lines", type=int, default=20, help="lines shown by -t (default 20)")
    parser.add_argument("--rank", type=int, default=0, metavar="K", help="with -t: rank K's log (worker_K.log, the SLURM job's task K)")
    add_trust(parser)
    add_config_dir(parser)


@quiet_on_closed_pipe
def main(args: argparse.Namespace) -> int:
    from baton.errors import UserError
    from baton.xp.folder import SOLVER_LOG, find_xp
    from baton.xp.launch import xp_root
    from baton.xp.status import summarize

    sig = args.sig or args.sig_pos
    if not sig and args.metrics not in (None, ALL):
        sig, args.metrics = args.metrics, ALL  # `baton info -m SIG`: -m took the SIG as its value
    if not sig:
        raise UserError("baton info: which XP? give -f SIG (`baton ls` lists them)")
    folder = find_xp(sig, xp_root(args.config_dir))
    summary = summarize(folder)
    columns = metric_columns(summary.history)
    if args.metrics not in (None, ALL):
        columns = select_columns(columns, args.metrics)  # a wrong name fails before any output
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
    from baton.xp import slurm

    job = slurm.job_record(folder.path)
    if job is not None:
        rows.append(("slurm", f"job {job['job_id']} {slurm.job_state(folder.path) or '(squeue not available)'}"))
    off = _trackers_off(folder.path)
    if off:
        rows.append(("trackers", "off in the last run: " + "; ".join(f"{name} ({reason})" for name, reason in off.items())))
    for stage, metrics in (summary.history[-1] if summary.history else {}).items():
        rows.append((f"last {stage}", " | ".join(f"{k} {format_number(v)}" for k, v in metrics.items())))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:  # soft_wrap: a long value (an error naming a file) stays one line
        out.print(f"{name:<{width}}  {value}", markup=False, soft_wrap=True)
    if args.metrics is not None:
        out.print(metrics_table(summary.history, columns, width=out.width))
    if args.plot:
        from baton.xp.commands.plot import plot_history

        panels = plot_history(summary.history, columns, Path(args.plot), f"XP {summary.sig}")
        out.print(f"plot       {args.plot} ({panels} metric(s))", markup=False)
    if args.tail:
        logs = [folder.path / (SOLVER_LOG if args.rank == 0 else f"worker_{args.rank}.log"), *slurm.job_logs(folder.path, args.rank)]
        for log in logs:
            if not log.is_file() and log.name != SOLVER_LOG:
                continue
            lines = log.read_text(errors="replace").splitlines()[-args.lines:] if log.is_file() else []
            shown = log.relative_to(folder.path) if log.is_relative_to(folder.path) else log
            out.rule(f"{shown} (last {len(lines)} lines)")
            for line in lines:
                out.print(line, markup=False)
    return 0


def _trackers_off(folder: Path) -> dict[str, str]:
    """The trackers the XP's last run went on without (logging.required=false, or failed)."""
    import json

    from baton.loggers.fanout import OFF_FILE

    try:
        off = json.loads((folder / OFF_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in off.items()} if isinstance(off, dict) else {}


def _checkpoint_epoch(folder: Path, *, trusted: bool = False) -> str:
    from baton.xp_checkpoints import describe_latest

    return describe_latest(folder, trusted=trusted)


STAGE_ORDER = ("train", "valid", "evaluate", "generate")


def stage_rank(stage: str) -> int:
    """Where a stage's columns go: in the loop's order, then other results (test sets)."""
    return STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER)


def metric_columns(history: Sequence[dict[str, dict[str, float]]]) -> list[tuple[str, str]]:
    """Every (stage, metric) of the history: stages in the loop's order (history.jsonl stores
    them alphabetically), then other results; metrics in the order they first appear."""
    columns: list[tuple[str, str]] = []
    for entry in history:
        for stage, metrics in entry.items():
            for name in metrics:
                if (stage, name) not in columns:
                    columns.append((stage, name))
    return sorted(columns, key=lambda column: stage_rank(column[0]))


def select_columns(columns: Sequence[tuple[str, str]], names: str) -> list[tuple[str, str]]:
    """The columns that comma-separated `names` match, in the order the names are given.

    A name matches `stage.metric`, or (without a dot) the metric in every stage; fnmatch
    patterns (`valid.*`, `mel*`) allowed.

    Raises:
        UserError: a name matches no column (the message lists the columns there are).
    """
    from baton.errors import UserError, did_you_mean

    chosen: list[tuple[str, str]] = []
    for pattern in filter(None, (name.strip() for name in names.split(","))):
        matched = [
            (stage, name) for stage, name in columns
            if fnmatch.fnmatchcase(f"{stage}.{name}", pattern)
            or ("." not in pattern and fnmatch.fnmatchcase(name, pattern))
        ]
        if not matched:
            known = [f"{stage}.{name}" for stage, name in columns]
            raise UserError(
                f"--metrics: no metric matches '{pattern}'{did_you_mean(pattern, known)}; "
                f"there are {', '.join(known) or 'none yet'}"
            )
        chosen.extend(column for column in matched if column not in chosen)
    if not chosen:
        raise UserError("--metrics: give names, e.g. --metrics valid.loss,train.loss (or -m for all)")
    return chosen


def metrics_table(
    history: Sequence[dict[str, dict[str, float]]],
    columns: Sequence[tuple[str, str]] | None = None,
    *,
    width: int | None = None,
) -> Any:
    """Epochs as rows, one column per (stage, metric) (default: all, in the order they first
    appear), headed on two lines: the stage, then the metric.

    With `width` (the console's), a table that would not fit is split into several, each with
    the epoch column, rather than squeezed until the headers are cut.
    """
    from rich.console import Group
    from rich.table import Table

    columns = metric_columns(history) if columns is None else list(columns)
    cells = {
        column: [format_number(entry.get(column[0], {}).get(column[1])) for entry in history]
        for column in columns
    }
    epochs = [str(epoch) for epoch in range(1, len(history) + 1)]
    chunks = _fit(columns, cells, epochs, width) if width else [columns]

    def table(part: Sequence[tuple[str, str]], title: str) -> Table:
        result = Table(title=title)
        result.add_column("epoch", justify="right", no_wrap=True)
        for stage, name in part:
            result.add_column(f"{stage}\n{name}", justify="right", no_wrap=True)
        for row, epoch in enumerate(epochs):
            result.add_row(epoch, *(cells[column][row] for column in part))
        return result

    if len(chunks) == 1:
        return table(chunks[0], "metrics per epoch")
    return Group(*(table(part, f"metrics per epoch ({i}/{len(chunks)})") for i, part in enumerate(chunks, start=1)))


def _fit(
    columns: Sequence[tuple[str, str]], cells: dict[tuple[str, str], list[str]], epochs: Sequence[str],
    width: int,
) -> list[list[tuple[str, str]]]:
    """Consecutive groups of columns, each fitting `width` with the epoch column in front."""

    def size(texts: Sequence[str]) -> int:  # a column's cells plus padding (2) and a rule (1)
        return max((len(text) for text in texts), default=0) + 3

    start = 1 + size(["epoch", *epochs])  # the left edge, then the epoch column
    chunks: list[list[tuple[str, str]]] = [[]]
    used = start
    for column in columns:
        need = size([*column, *cells[column]])
        if chunks[-1] and used + need > width:
            chunks.append([])
            used = start
        chunks[-1].append(column)
        used += need
    return chunks
