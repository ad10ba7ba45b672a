"""`baton check-resume [overrides]`: prove that an XP's task resumes exactly (see
`baton.xp.check_resume`). Exit code 0 only when every stopped-and-resumed run equals the
uninterrupted one, bit for bit, and the training data is a function of (seed, epoch, index)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from baton.xp.commands.common import add_config_dir

if TYPE_CHECKING:
    from baton.xp.check_resume import ResumeCheck


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", help="the XP's overrides, as for baton run: solver=example optim.lr=1e-3")
    parser.add_argument("-f", "--from_sig", dest="sig", metavar="SIG", help="check SIG's overrides (then these)")
    parser.add_argument("--updates", type=int, default=None, metavar="N",
                        help="train N updates per run (default: the whole run, optim.epochs)")
    parser.add_argument("--at", default=None, metavar="K,...", help="stop at these updates (default: N // 2)")
    parser.add_argument("--stops", default="term,kill", metavar="KINDS",
                        help="how to stop: term (SIGTERM: checkpoint, exit), kill (SIGKILL after a mid-epoch "
                             "checkpoint), or both (default)")
    parser.add_argument("-d", "--distrib", action="store_true",
                        help="run each training on several ranks (torchrun; --nproc N CPU processes with gloo)")
    parser.add_argument("--nproc", type=int, default=None, metavar="N", help="with -d: the number of processes")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (the runs' logs and checkpoints)")
    add_config_dir(parser)


def main(args: argparse.Namespace) -> int:
    from baton.xp.check_resume import check_resume, parse_at
    from baton.xp.commands.common import console, run_overrides
    from baton.xp.local_distributed import nproc_for

    overrides = run_overrides(args, "check-resume")
    out = console()
    nproc = nproc_for(args.nproc, "cuda") if args.distrib else 1  # without --nproc: one per GPU
    check = check_resume(
        overrides, updates=args.updates, at=parse_at(args.at), stops=[s.strip() for s in args.stops.split(",") if s.strip()],
        keep=args.keep, config_dir=args.config_dir, nproc=nproc, say=lambda line: print(f"baton: {line}", flush=True),
    )
    print_check(check, out)
    return 0 if check.exact else 1


def print_check(check: ResumeCheck, out: Any) -> None:
    """The verdict table (one column per stopped run), then the first divergence and its fix."""
    from rich.table import Table

    table = Table(title=f"check-resume: XP {check.sig}, {check.updates} updates")
    table.add_column("compared")
    for verdict in check.verdicts:
        table.add_column(verdict.name)
    for row in check.verdicts[0].rows if check.verdicts else []:
        table.add_row(row, *(_cell(v.rows.get(row)) for v in check.verdicts))
    if check.verdicts:
        data = "no" if check.data else "yes"
        table.add_row("data from (seed, epoch, item)", *([data] * len(check.verdicts)))
    out.print(table)
    shown = set()
    for verdict in check.verdicts:
        if verdict.diagnosis and verdict.diagnosis not in shown:
            shown.add(verdict.diagnosis)
            out.print(f"{verdict.name}: {verdict.diagnosis}", markup=False, soft_wrap=True)
            out.print(f"  fix: {verdict.fix}", markup=False, soft_wrap=True)
    if check.data and check.data[0] not in shown:
        out.print(f"data: {check.data[0]}", markup=False, soft_wrap=True)
        out.print(f"  fix: {check.data[1]}", markup=False, soft_wrap=True)
    if check.scratch is not None:
        out.print(f"scratch folder kept: {check.scratch}", markup=False)
    outcome = "exact" if check.exact else "NOT exact"
    print(f"baton: XP {check.sig} resumes {outcome} ({len(check.verdicts)} stopped run(s), {check.seconds:.0f} s)")


def _cell(where: str | None) -> str:
    return "exact" if where is None else f"differs: {where}"
