"""`baton grid NAME`: declare a grid's XPs, run the ones not done, show a table until all end.

SIGINT (Ctrl-C), SIGTERM or SIGHUP stops the grid's running XPs at their next checkpoint and
exits with 128 + signal; a second one kills them at once (see `baton.xp.local_launcher`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from baton.errors import UserError
from baton.xp.commands.common import STATUS_STYLE, add_config_dir, console, format_number


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument("--package", action="append", default=[], help="grids package (BATON_GRID_PACKAGE adds more)")
    add_config_dir(parser)


def main(args: argparse.Namespace) -> int:
    from baton.xp import status as st
    from baton.xp.explore import load_grid
    from baton.xp.launch import init_xp
    from baton.xp.local_launcher import LocalLauncher

    explorer = load_grid(args.name, args.package)
    xps = _compose_all(args.name, explorer.declare(), args.config_dir)
    if args.clear:
        _clear(args.name, xps, assume_yes=args.yes)
    folders = [init_xp(xp) for xp in xps]
    names = _short_names([xp.delta for xp in xps])
    out = console()

    def table() -> Any:
        return _table(args.name, folders, names, explorer.metrics)

    if args.dry_run or args.init:
        out.print(table())
        return 0
    wanted = {st.NEW, st.KILLED} | ({st.FAILED} if args.retry else set())
    launcher = LocalLauncher(args.jobs, args.config_dir)
    for folder in folders:
        if st.xp_status(folder) in wanted:
            launcher.submit(folder.sig, folder.path)
    launched = [sig for sig, _ in launcher.pending]
    if not launched:
        out.print(table())
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
        stopped = launcher.wait(lambda: None, notify=notify)
        out.print(table())
    if stopped is not None:
        return _report_stop(args.name, stopped, [f for f in folders if f.sig in launched], out)
    statuses = {f.sig: st.xp_status(f) for f in folders if f.sig in launched}
    bad = [sig for sig, status in statuses.items() if status != st.DONE]
    for sig in bad:
        out.print(f"XP {sig} {statuses[sig]}: see {folders[0].path.parent / sig}/launcher.log", markup=False)
    return 1 if bad else 0


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


def _table(name: str, folders: Sequence[Any], names: Sequence[str], metrics: Sequence[str]) -> Any:
    from rich.table import Table

    from baton.xp.status import summarize

    table = Table(title=f"grid {name}")
    for column in ("#", "name", "state", "sig", "epoch", *metrics):
        table.add_column(column, justify="right" if column in ("#", "epoch") or column in metrics else "left")
    for index, (folder, xp_name) in enumerate(zip(folders, names, strict=True)):
        summary = summarize(folder)
        style = STATUS_STYLE.get(summary.status, "")
        table.add_row(
            str(index),
            xp_name,
            f"[{style}]{summary.status}[/]",
            summary.sig,
            str(summary.epoch),
            *(format_number(summary.metric(m)) for m in metrics),
        )
    return table
