"""`baton grid NAME`: declare a grid's XPs, run the ones not done, show a table until all end.

The grid itself (composing, clearing, running, submitting, the table) is `baton.xp.grid.Grid`,
usable from Python; this module shows it.

On a terminal the table is redrawn in place; without one (a log file, a pipe, CI) the grid
prints one line each time an XP changes status, then the table once at the end.

SIGINT (Ctrl-C), SIGTERM or SIGHUP stops the grid's running XPs at their next checkpoint and
exits with 128 + signal; a second one kills them at once (see `baton.xp.local_launcher`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from baton.xp.commands.common import (
    add_config_dir,
    console,
    format_number,
    quiet_on_closed_pipe,
)
from baton.xp.commands.tables import add_format

EXAMPLES = """\
examples:
  baton grid example --dry_run      show the grid's XPs (sig, status, metrics); run nothing
  baton grid example                run the XPs that are new or killed, one at a time
  baton grid example -j 2           ... two at a time
  baton grid example -r             also run the failed ones again
  baton grid example --clear -y     delete the grid's XP folders first, without asking
  baton grid mygrid --package mypkg.grids --config-dir conf
                                    a grid file of your own project (mypkg/grids/mygrid.py)
  baton info -f SIG -m              one XP of the grid: metrics per epoch

A grid file holds one @explorer function (see baton/grids/example.py). Ctrl-C stops the running
XPs at their next checkpoint (a second one kills them); `baton grid NAME` again resumes them."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("name", help="grid file in a grids package, e.g. example or compression/debug")
    parser.add_argument(
        "--dry_run",
        action="store_true",
        help="show the grid and run nothing; each XP's overrides are stored so `run -f SIG` works",
    )
    parser.add_argument("--init", action="store_true", help="store every XP's overrides and stop (like --dry_run)")
    parser.add_argument("--clear", action="store_true", help="delete the grid's XP folders first")
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask before --clear")
    parser.add_argument("-r", "--retry", action="store_true", help="run failed XPs again")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="XPs run at once (default 1)")
    parser.add_argument("--package", action="append", default=[], help="grids package (BATON_GRID_PACKAGE and grid_package in baton.toml add more)")
    parser.add_argument(
        "--slurm", action="store_true",
        help="submit the XPs not done as SLURM jobs (job arrays for groups with the same resources) and return",
    )
    add_format(parser)
    add_config_dir(parser)


@quiet_on_closed_pipe
def main(args: argparse.Namespace) -> int:
    from baton.xp import status as st
    from baton.xp.grid import Grid

    grid = Grid.load(args.name, args.package, args.config_dir, clear=args.clear, assume_yes=args.yes)
    out = console()

    def final_table() -> None:
        """The table the grid ends with, in `--format` (CSV and Markdown go to stdout as text)."""
        if args.format == "table":
            out.print(grid.table())
        else:
            print(grid.table(args.format), flush=True)

    def notify(message: str) -> None:
        out.print(message if message.startswith(f"grid {args.name}:") else f"grid {args.name}: {message}", markup=False)

    if args.dry_run or args.init:
        final_table()
        return 0
    if args.slurm:
        grid.submit(args.retry, notify=notify)
        final_table()
        return 0
    if not grid.pending(args.retry):
        final_table()
        failed = [f.sig for f in grid.folders if st.xp_status(f) == st.FAILED]
        if failed:
            out.print(f"{len(failed)} failed XP(s); `baton grid {args.name} -r` runs them again", markup=False)
        return 0
    if out.is_terminal:
        from rich.live import Live

        with Live(grid.table(), console=out, refresh_per_second=1) as live:
            outcome = grid.run(args.jobs, args.retry, on_tick=lambda: live.update(grid.table()), notify=notify)
    else:
        lines = StatusLines(args.name, grid.folders, grid.names, grid.metrics, notify=out.print)
        outcome = grid.run(args.jobs, args.retry, on_tick=lines.update, notify=notify)
        final_table()
    if outcome.stopped is not None:
        return _report_stop(args.name, outcome.stopped, [f for f in grid.folders if f.sig in outcome.launched], out)
    bad = [sig for sig, status in outcome.statuses.items() if status != st.DONE]
    for sig in bad:
        if sig in outcome.skipped:
            out.print(f"XP {sig} not started: it refers to XP {outcome.skipped[sig]}, which did not finish", markup=False)
        else:
            out.print(f"XP {sig} {outcome.statuses[sig]}: see {grid.folders[0].path.parent / sig}/launcher.log", markup=False)
    return 1 if bad else 0


class StatusLines:
    """Without a terminal: one line per XP each time its status changes, e.g.

        grid example: #1 3f2a1b0c (optim.lr=0.003) running
        grid example: #1 3f2a1b0c (optim.lr=0.003) done: epoch 4, valid.loss 0.0123

    (`#` is the XP's row in the grid's table.)
    The statuses the XPs have when the grid starts are the baseline: nothing is printed for
    them, only for what changes after.
    """

    def __init__(
        self, grid: str, folders: Sequence[Any], names: Sequence[str], metrics: Sequence[str],
        notify: Any,
    ) -> None:
        from baton.xp import status as st

        self.grid, self.folders, self.names, self.metrics = grid, list(folders), list(names), list(metrics)
        self.notify = notify
        self.seen = {folder.sig: st.xp_status(folder) for folder in self.folders}

    def update(self) -> None:
        """Print a line for each XP whose status changed since the last call."""
        from baton.xp import status as st

        for index, (folder, name) in enumerate(zip(self.folders, self.names, strict=True)):
            status = st.xp_status(folder)
            if status == self.seen.get(folder.sig):
                continue
            self.seen[folder.sig] = status
            self.notify(self.line(index, folder, name, status), markup=False, soft_wrap=True)

    def line(self, index: int, folder: Any, name: str, status: str) -> str:
        from baton.xp import status as st

        text = f"grid {self.grid}: #{index} {folder.sig} ({name}) {status}"
        if status == st.RUNNING:
            return text
        summary = st.summarize(folder)
        details = [f"epoch {summary.epoch}"]
        details += [f"{metric} {format_number(value)}" for metric in self.metrics
                    if (value := summary.metric(metric)) is not None]
        if summary.message:
            details.append(summary.message)
        return f"{text}: {', '.join(details)}"


def _report_stop(name: str, signum: int, launched: Sequence[Any], out: Any) -> int:
    """After a stop signal: which XPs to run again, and the exit code 128 + signal, as a shell
    reports a process stopped by that signal."""
    import signal

    from baton.xp import status as st

    statuses = [st.xp_status(folder) for folder in launched]
    resumable = sum(status in (st.KILLED, st.NEW) for status in statuses)
    out.print(
        f"grid {name} stopped by {signal.Signals(signum).name}: {resumable} XP(s) killed or not started; "
        f"`baton grid {name}` runs them again (killed ones resume from their checkpoint)",
        markup=False,
    )
    return 128 + signum
