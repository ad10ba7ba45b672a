"""Grids from Python: a grid file's XPs composed, placed, run locally or submitted to SLURM.

    from baton.xp.grid import Grid

    grid = Grid.load("example")                  # baton/grids/example.py, or --package's
    outcome = grid.run(jobs=2)                   # the XPs not done, two at a time; resumes killed ones
    print(grid.table("markdown"), outcome.statuses)

`baton grid NAME` is a thin caller of this module: it adds the live table on a terminal, one
line per status change without one, and the exit code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baton.errors import UserError
from baton.xp.commands.tables import render


@dataclass
class GridOutcome:
    """What a grid run did: the XPs it launched, the stop signal that ended it (None: it ran to
    the end), every launched XP's final status, and those skipped because an XP they refer to
    did not finish."""

    launched: list[str]
    stopped: int | None
    statuses: dict[str, str]
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass
class Grid:
    """A grid's XPs, composed, signed and placed (their folders exist, with `.argv.json`)."""

    name: str
    xps: list[Any]  # baton.config.Composition, one per distinct signature
    folders: list[Any]  # baton.xp.folder.XPFolder, in the same order
    names: list[str]  # each XP's delta without what the grid's XPs share
    metrics: list[str]  # the explorer's table columns
    config_dir: list[str]

    @classmethod
    def load(cls, name: str, packages: Sequence[str] = (), config_dir: Sequence[str] = (), *,
             clear: bool = False, assume_yes: bool = False) -> Grid:
        """Compose the XPs grid file `name` declares; `clear` deletes their folders first (all
        or none: see `clear_xps`)."""
        from baton.xp.explore import load_grid
        from baton.xp.launch import init_xp

        explorer = load_grid(name, packages)
        xps = compose_all(name, explorer.declare(list(config_dir)), list(config_dir))
        if clear:
            clear_xps(name, xps, assume_yes=assume_yes)
        folders = [init_xp(xp) for xp in xps]
        return cls(name, xps, folders, short_names([xp.delta for xp in xps]), list(explorer.metrics), list(config_dir))

    def statuses(self) -> dict[str, str]:
        from baton.xp import status as st

        return {folder.sig: st.xp_status(folder) for folder in self.folders}

    def table(self, fmt: str = "table") -> Any:
        """The grid's table (#, name, state, sig, epoch, the metrics): a rich Table, or text
        for `fmt` csv / markdown."""
        return grid_table(self.name, self.folders, self.names, self.metrics, fmt)

    def to_run(self, retry: bool = False) -> set[str]:
        """The statuses a run starts: new and killed XPs, and failed ones with `retry`."""
        from baton.xp import status as st

        return {st.NEW, st.KILLED} | ({st.FAILED} if retry else set())

    def pending(self, retry: bool = False) -> list[str]:
        """The XPs a run would start (new, killed, and failed with `retry`)."""
        wanted = self.to_run(retry)
        return [sig for sig, status in self.statuses().items() if status in wanted]

    def run(self, jobs: int = 1, retry: bool = False, on_tick: Callable[[], None] | None = None,
            notify: Callable[[str], None] | None = None) -> GridOutcome:
        """Run the XPs not done on this machine, `jobs` at a time, each after the XPs it refers
        to (`//sig/`); `on_tick()` is called while waiting, `notify(message)` on events. A stop
        signal (Ctrl-C, SIGTERM) stops the running XPs at their next checkpoint."""
        from baton.xp import status as st
        from baton.xp.local_launcher import LocalLauncher

        wanted = self.to_run(retry)
        launcher = LocalLauncher(jobs, self.config_dir)
        needs = xp_needs(self.xps)
        for folder in self.folders:
            if st.xp_status(folder) in wanted:
                launcher.submit(folder.sig, folder.path, after=needs[folder.sig])
        launched = [sig for sig, _ in launcher.pending]
        if not launched:
            return GridOutcome([], None, {})
        if notify is not None:
            notify(f"running {len(launched)} of {len(self.folders)} XPs, {launcher.jobs} at a time")
        stopped = launcher.wait(on_tick or (lambda: None), notify=notify or (lambda message: None))
        statuses = {f.sig: st.xp_status(f) for f in self.folders if f.sig in launched}
        return GridOutcome(launched, stopped, statuses, dict(launcher.skipped))

    def submit(self, retry: bool = False, notify: Callable[[str], None] = print) -> list[str]:
        """`--slurm`: submit the XPs to run that have no live job (each after the XPs it refers
        to); returns the job ids."""
        return submit_grid(self.name, self.xps, self.folders, self.to_run(retry), notify)


def xp_needs(xps: Sequence[Any]) -> dict[str, set[str]]:
    """For each XP, the XPs of this grid it refers to by `//sig/` (its codec, say): it starts
    after they finish, locally and on SLURM."""
    from baton.solver.references import referenced_sigs

    sigs = {xp.sig for xp in xps}
    return {xp.sig: referenced_sigs(value for _, value in xp.delta) & sigs for xp in xps}


def compose_all(name: str, declared: Sequence[Sequence[str]], config_dir: Sequence[str]) -> list[Any]:
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


def submit_grid(name: str, xps: Sequence[Any], folders: Sequence[Any], wanted: set[str], notify: Callable[[str], None]) -> list[str]:
    """Submit the XPs in `wanted` states that have no live job; returns the job ids."""
    from baton.xp import slurm
    from baton.xp import status as st

    states = slurm.job_states([folder.path for folder in folders])
    live = {f.sig: record["job_id"] for f in folders
            if states[f.path] in slurm.LIVE_STATES and (record := slurm.job_record(f.path)) is not None}
    statuses = {f.sig: st.xp_status(f) for f in folders}
    needs = xp_needs(xps)
    todo: list[slurm.Submission] = []
    for xp, folder in zip(xps, folders, strict=True):
        if statuses[folder.sig] not in wanted or folder.sig in live:
            continue
        submitted = {s.sig for s in todo}
        blocked = [sig for sig in sorted(needs[xp.sig])
                   if statuses[sig] != st.DONE and sig not in live and sig not in submitted]
        if blocked:  # failed (and no -r), or a reference declared after this XP
            notify(f"grid {name}: XP {xp.sig} not submitted: it refers to XP {blocked[0]}, which is "
                   f"{statuses[blocked[0]]} and not submitted")
            statuses[folder.sig] = "blocked"  # and so are the XPs that refer to this one
            continue
        after = tuple(sorted(sig for sig in needs[xp.sig] if sig in live or sig in submitted))
        todo.append(slurm.Submission(xp.sig, Path(xp.folder), list(xp.overrides),
                                     slurm.settings_for(xp.cfg, xp.overrides), after))
    if not todo:
        notify(f"grid {name}: nothing to submit (done, or with a live job)")
        return []
    ids = list(slurm.submit_many(todo, name, live))
    notify(f"grid {name}: submitted {len(todo)} XP(s) to SLURM (jobs {', '.join(ids)}); "
           f"`baton grid {name}` shows their progress")
    return ids


def clear_xps(name: str, xps: Sequence[Any], assume_yes: bool) -> None:
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


def short_names(deltas: Sequence[Sequence[tuple[str, Any]]]) -> list[str]:
    """Each XP's delta without the entries every XP of the grid shares."""
    from baton.config.signature import format_delta

    sets = [{(k, repr(v)) for k, v in delta} for delta in deltas]
    common = set.intersection(*sets) if len(sets) > 1 else set()
    names = []
    for delta in deltas:
        own = [(k, v) for k, v in delta if (k, repr(v)) not in common]
        names.append(format_delta(own) or "(base)")
    return names


def grid_table(name: str, folders: Sequence[Any], names: Sequence[str], metrics: Sequence[str], fmt: str = "table") -> Any:
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
