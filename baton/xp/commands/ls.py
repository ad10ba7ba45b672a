"""`baton ls`: every XP under the XP root, one row each."""

from __future__ import annotations

import argparse

from baton.xp.commands.common import (
    add_config_dir,
    console,
    format_age,
    format_number,
    quiet_on_closed_pipe,
)
from baton.xp.commands.tables import add_format, render


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status", help="only XPs in this state (running, done, failed, killed, new)")
    add_format(parser)
    add_config_dir(parser)


@quiet_on_closed_pipe
def main(args: argparse.Namespace) -> int:
    from baton.xp.folder import all_xps, xps_dir
    from baton.xp.launch import xp_root
    from baton.xp.status import CORRUPT, summarize

    root = xp_root(args.config_dir)
    summaries = [summarize(xp) for xp in all_xps(root)]
    if args.status:
        summaries = [s for s in summaries if s.status == args.status]
    out = console()
    if not summaries:
        out.print(f"no XPs in {xps_dir(root)}", markup=False)
        return 0
    from baton.xp.slurm import job_record, job_states

    states = job_states([s.folder for s in summaries])
    rows = []
    for s in sorted(summaries, key=lambda s: -s.age):
        best = f"{s.best_key} {format_number(s.best)}" if s.best is not None else ""
        job = job_record(s.folder)
        slurm = f"{job['job_id']} {states[s.folder] or ''}".strip() if job else ""
        rows.append([s.sig, s.delta_text, s.status, s.epoch, best, format_age(s.age), slurm])
    headers = ["sig", "delta", "status", "epoch", "best", "age", "slurm"]
    table = render(args.format, f"XPs in {xps_dir(root)}", headers, rows, right=("epoch", "best", "age"))
    if args.format == "table":
        out.print(table)
    else:
        print(table)
        return 0
    corrupt = [s.sig for s in summaries if s.status == CORRUPT]
    if corrupt:
        out.print(f"{len(corrupt)} corrupt XP(s); `baton info -f {corrupt[0]}` names the damaged file", markup=False)
    return 0
