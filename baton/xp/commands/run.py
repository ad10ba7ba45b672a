"""`baton run [overrides]`: compose, sign and run an XP, resuming it when it exists."""

from __future__ import annotations

import argparse

from baton.errors import UserError
from baton.xp.commands.common import add_config_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", help="config overrides: solver=example optim.lr=1e-3")
    parser.add_argument("-f", "--from_sig", dest="sig", metavar="SIG", help="start from SIG's overrides, then apply these")
    parser.add_argument("--dry_run", action="store_true", help="print the sig, delta and folder; run nothing")
    parser.add_argument("--clear", action="store_true", help="delete the XP folder first (start fresh)")
    parser.add_argument("-d", "--distrib", action="store_true", help="one process per local device (not available yet)")
    add_config_dir(parser)


def main(args: argparse.Namespace) -> int:
    from baton.config import compose_xp
    from baton.config.signature import format_delta
    from baton.xp import status as st
    from baton.xp.folder import XPFolder
    from baton.xp.launch import replay_overrides, run_xp

    if args.distrib:
        raise UserError("baton run -d: distributed launching is not available yet; run without -d")
    overrides = list(args.overrides)
    if args.sig:
        overrides = replay_overrides(args.sig, overrides, args.config_dir)
    xp = compose_xp(overrides, args.config_dir)
    folder = XPFolder(xp.folder)
    if args.dry_run:
        state = st.xp_status(folder) if folder.exists() else "not created"
        print(f"sig:    {xp.sig}")
        print(f"delta:  {format_delta(xp.delta)}")
        print(f"folder: {xp.folder} ({state})")
        return 0
    print(f"baton: XP {xp.sig} ({format_delta(xp.delta)}) in {xp.folder}", flush=True)
    status = run_xp(xp, clear=args.clear, argv=overrides)
    if status == st.DONE:
        print(f"baton: XP {xp.sig} done; `baton info -f {xp.sig}` shows its results")
        return 0
    print(f"baton: XP {xp.sig} stopped early; `baton run -f {xp.sig}` resumes it")
    return 1
