"""`baton grid NAME`: declare a grid's XPs, run the ones not done, show a table until all end.

On a terminal the table is redrawn in place; without one (a log file, a pipe, CI) the grid
prints one line each time an XP changes status, then the table once at the end.

SIGINT (Ctrl-C), SIGTERM or SIGHUP stops the grid's running XPs at their next checkpoint and
exits with 128 + signal; a second one kills them at once (see `baton.xp.local_launcher`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from baton.errors import UserError
from baton.xp.commands.common import (
    add_config_dir,
    console,
    format_number,
    quiet_on_closed_pipe,
)
from baton.xp.commands.tables import add_format, render

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
    from baton.xp.explore import load_grid
    from baton.xp.launch import init_xp
    from baton.xp.local_launcher import LocalLauncher

    explorer = load_grid(args.name, args.package)
    xps = _compose_all(args.name, explorer.declare(args.config_dir), args.config_dir)
    if args.clear:
        _clear(args.name, xps, assume_yes=args.yes)
    folders = [init_xp(xp) for xp in xps]
    names = _short_names([xp.delta for xp in xps])
    out = console()

    def table(fmt: str = "table") -> Any:
        return _table(args.name, folders, names, explorer.metrics, fmt)

    def final_table() -> None:
        """The table the grid ends with, in `--format` (CSV and Markdown go to stdout as text)."""
        if args.format == "table":
            out.print(table())
        else:
            print(table(args.format), flush=True)

    if args.dry_run or args.init:
        final_table()
        return 0
    wanted = {st.NEW, st.KILLED} | ({st.FAILED} if args.retry else set())
    if args.slurm:
        return _submit_grid(args.name, xps, folders, wanted, out, final_table)
    launcher = LocalLauncher(args.jobs, args.config_dir)
    needs = _needs(xps)
    for folder in folders:
        if st.xp_status(folder) in wanted:
            launcher.submit(folder.sig, folder.path, after=needs[folder.sig])
    launched = [sig for sig, _ in launcher.pending]
    if not launched:
        final_table()
        failed = [f.sig for f in folders if st.xp_status(f) == st.FAILED]
        if failed:
            out.print(f"{len(failed)} failed XP(s); `baton grid {args.name} -r` runs them again", markup=False)
        return 0
    out.print(f"grid {args.name}: running {len(launched)} of {len(folders)} XPs, {launcher.jobs} at a time", markup=False)

    def notify(message: str) -> None:
        out.print(f"grid {args.name}: {message}", markup=False)

    if out.is_terminal:
        from rich.live import Live

        with Live(table(), console=out, refresh_per_second=1) as live:
            stopped = launcher.wait(lambda: live.update(table()), notify=notify)
    else:
        lines = StatusLines(args.name, folders, names, explorer.metrics, notify=out.print)
        stopped = launcher.wait(lines.update, notify=notify)
        final_table()
    if stopped is not None:
        return _report_stop(args.name, stopped, [f for f in folders if f.sig in launched], out)
    statuses = {f.sig: st.xp_status(f) for f in folders if f.sig in launched}
    bad = [sig for sig, status in statuses.items() if status != st.DONE]
    for sig in bad:
        if sig in launcher.skipped:
            out.print(f"XP {sig} not started: it refers to XP {launcher.skipped[sig]}, which did not finish", markup=False)
        else:
            out.print(f"XP {sig} {statuses[sig]}: see {folders[0].path.parent / sig}/launcher.log", markup=False)
    return 1 if bad else 0


def _needs(xps: Sequence[Any]) -> dict[str, set[str]]:
    """For each XP, the XPs of this grid it refers to by `//sig/` (its codec, say): it starts
    after they finish, locally and on SLURM."""
    from baton.solver.references import referenced_sigs

    sigs = {xp.sig for xp in xps}
    return {xp.sig: referenced_sigs(value for _, value in xp.delta) & sigs for xp in xps}


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


def _compose_all(name: str, declared: Sequence[Sequence[str]], config_dir: Sequence[str]) -> list[Any]:
    from baton.config import compose_xp
    from baton.errors import ConfigError

    xps, seen = [], set()
    for index, overrides in enumerate(declared):
        try:
            xp = compose_xp(list(overrides), config_dir)
        except ConfigError as exc:
            raise ConfigError(f"grid {name}, XP {index} ({' '.join(overrides)}): {exc}") from None
        if xp.sig not in seen:
            seen.add(xp.sig)
            xps.append(xp)
    if not xps:
        raise UserError(f"grid {name} declares no XP: its explorer never calls the launcher")
    return xps


def _submit_grid(name: str, xps: Sequence[Any], folders: Sequence[Any], wanted: set[str], out: Any, final_table: Any) -> int:
    """`--slurm`: submit the XPs in `wanted` states that have no live job, then show the table."""
    from baton.xp import slurm
    from baton.xp import status as st

    states = slurm.job_states([folder.path for folder in folders])
    live = {f.sig: record["job_id"] for f in folders
            if states[f.path] in slurm.LIVE_STATES and (record := slurm.job_record(f.path)) is not None}
    statuses = {f.sig: st.xp_status(f) for f in folders}
    needs = _needs(xps)
    todo: list[slurm.Submission] = []
    for xp, folder in zip(xps, folders, strict=True):
        if statuses[folder.sig] not in wanted or folder.sig in live:
            continue
        submitted = {s.sig for s in todo}
        blocked = [sig for sig in sorted(needs[xp.sig])
                   if statuses[sig] != st.DONE and sig not in live and sig not in submitted]
        if blocked:  # failed (and no -r), or a reference declared after this XP
            out.print(f"grid {name}: XP {xp.sig} not submitted: it refers to XP {blocked[0]}, which is "
                      f"{statuses[blocked[0]]} and not submitted", markup=False)
            statuses[folder.sig] = "blocked"  # and so are the XPs that refer to this one
            continue
        after = tuple(sorted(sig for sig in needs[xp.sig] if sig in live or sig in submitted))
        todo.append(slurm.Submission(xp.sig, Path(xp.folder), list(xp.overrides),
                                     slurm.settings_for(xp.cfg, xp.overrides), after))
    if todo:
        ids = slurm.submit_many(todo, name, live)
        out.print(f"grid {name}: submitted {len(todo)} XP(s) to SLURM (jobs {', '.join(ids)}); "
                  f"`baton grid {name}` shows their progress", markup=False)
    else:
        out.print(f"grid {name}: nothing to submit (done, or with a live job)", markup=False)
    final_table()
    return 0


def _clear(name: str, xps: Sequence[Any], assume_yes: bool) -> None:
    """Delete the folders of the grid's XPs, all or none.

    Every XP's lock is taken before anything is deleted, and held until the end: a running XP
    (lock held by a live process) refuses the whole clear, naming it, with nothing deleted, and
    no XP can start between the check and the deletion.

    Raises:
        UserError: an XP is running, or the user did not confirm; nothing was deleted.
    """
    from contextlib import ExitStack

    from baton.xp.launch import clear_folder
    from baton.xp.lock import XPBusyError, XPLock

    existing = [Path(xp.folder) for xp in xps if Path(xp.folder).is_dir()]
    if not existing:
        return
    from baton.xp.slurm import LIVE_STATES, cancel, job_states

    states = job_states(existing)
    live = [folder for folder in existing if states[folder] in LIVE_STATES]
    if live:  # their jobs hold the XPs' locks: cancel them (once confirmed) before locking
        if not assume_yes:
            answer = input(f"cancel {len(live)} SLURM job(s) and delete the folders of {len(existing)} XP(s) of grid {name}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                raise UserError("--clear cancelled; nothing cancelled or deleted")
            assume_yes = True
        for folder in live:
            cancel(folder)
    with ExitStack() as locks:
        for folder in existing:
            try:
                locks.enter_context(XPLock(folder))
            except XPBusyError as exc:
                raise UserError(f"grid {name} --clear: nothing deleted, {exc}") from None
        if not assume_yes:
            answer = input(f"delete the folders of {len(existing)} XP(s) of grid {name}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                raise UserError("--clear cancelled; nothing deleted")
        for folder in existing:
            clear_folder(folder)


def _short_names(deltas: Sequence[Sequence[tuple[str, Any]]]) -> list[str]:
    """Each XP's delta without the entries every XP of the grid shares."""
    from baton.config.signature import format_delta

    sets = [{(k, repr(v)) for k, v in delta} for delta in deltas]
    common = set.intersection(*sets) if len(sets) > 1 else set()
    names = []
    for delta in deltas:
        own = [(k, v) for k, v in delta if (k, repr(v)) not in common]
        names.append(format_delta(own) or "(base)")
    return names


def _table(name: str, folders: Sequence[Any], names: Sequence[str], metrics: Sequence[str], fmt: str = "table") -> Any:
    from baton.xp.slurm import job_record, job_states
    from baton.xp.status import summarize

    rows = []
    jobs = [job_record(folder.path) for folder in folders]
    states = job_states([folder.path for folder in folders]) if any(jobs) else {}
    for index, (folder, xp_name, job) in enumerate(zip(folders, names, jobs, strict=True)):
        summary = summarize(folder)
        row = [index, xp_name, summary.status, summary.sig, summary.epoch, *(summary.metric(m) for m in metrics)]
        if any(jobs):
            row.append(f"{job['job_id']} {states[folder.path] or ''}".strip() if job else "")
        rows.append(row)
    headers = ["#", "name", "state", "sig", "epoch", *metrics, *(["slurm"] if any(jobs) else [])]
    return render(fmt, f"grid {name}", headers, rows, right=("#", "epoch", *metrics))
