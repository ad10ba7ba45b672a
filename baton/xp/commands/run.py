"""`baton run [overrides]`: compose, sign and run an XP, resuming it when it exists."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from baton.errors import UserError
from baton.xp.commands.common import add_config_dir, run_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", help="config overrides: solver=example optim.lr=1e-3")
    parser.add_argument("-f", "--from_sig", dest="sig", metavar="SIG", help="start from SIG's overrides, then apply these")
    parser.add_argument("--dry_run", action="store_true", help="check the config as a run would, print the sig, delta and folder; run nothing")
    parser.add_argument("--clear", action="store_true", help="delete the XP folder first (start fresh)")
    parser.add_argument(
        "--accept-config-change", action="store_true",
        help="resume an XP whose config changed since it ran (an edited default); recorded in its config_changes.jsonl",
    )
    parser.add_argument(
        "-d", "--distrib", action="store_true",
        help="one process per local GPU (or --nproc N CPU processes), started by torch.distributed.run",
    )
    parser.add_argument("--nproc", type=int, default=None, metavar="N", help="with -d: the number of processes")
    parser.add_argument(
        "--slurm", action="store_true",
        help="submit the XP as a SLURM job (submitit) with the slurm.* settings, and return",
    )
    add_config_dir(parser)


def main(args: argparse.Namespace) -> int:
    from baton.config import compose_xp
    from baton.config.signature import format_delta
    from baton.xp import status as st
    from baton.xp.folder import XPFolder
    from baton.xp.launch import run_xp

    overrides = run_overrides(args, "run")
    xp = compose_xp(overrides, args.config_dir)
    folder = XPFolder(xp.folder)
    if args.dry_run:
        from baton.xp.launch import preflight

        preflight(xp)  # every check a real run makes before training: a refusal is rc 2 here too
        state = st.xp_status(folder) if folder.exists() else "not created"
        print(f"sig:    {xp.sig}")
        print(f"delta:  {format_delta(xp.delta)}")
        print(f"folder: {xp.folder} ({state})")
        return 0
    if args.slurm:
        return _submit(xp, overrides, args)
    if args.clear:
        from baton.xp.slurm import cancel

        cancel(folder.path)  # a job still running this XP stops first
    configured = xp.cfg.distributed.get("nproc")  # a grid's way to ask for -d
    if args.distrib or (configured is not None and int(configured) > 1):
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1:  # already one rank of a world (an outer torchrun or srun): join it
            if args.distrib:
                print(f"baton: -d ignored: this process is already one of {world} ranks", file=sys.stderr)
        else:
            from baton.xp.local_distributed import launch, nproc_for

            nproc = nproc_for(args.nproc if args.nproc is not None else configured, str(xp.cfg.device))
            return launch(xp.sig, Path(xp.folder), nproc, sys.argv[1:])
    started: list[float] = []

    def announce() -> None:  # once the XP can start: not before a refusal
        started.append(time.monotonic())
        print(f"baton: XP {xp.sig} ({format_delta(xp.delta)}) in {xp.folder}", flush=True)

    status = run_xp(xp, clear=args.clear, argv=overrides, accept_config_change=args.accept_config_change,
                    on_start=announce)
    if status == st.DONE and not started:
        print(f"baton: XP {xp.sig} is done ({len(folder.history())} epochs); --clear to start it again")
    if status == st.DONE:
        seconds = time.monotonic() - started[0] if started else None
        print_results(xp.sig, folder, str(xp.cfg.best_metric.stage), str(xp.cfg.best_metric.name), seconds)
        return 0
    print(f"baton: XP {xp.sig} stopped early; `baton run -f {xp.sig}` resumes it")
    return 1


def _submit(xp, overrides: list[str], args: argparse.Namespace) -> int:
    """`--slurm`: record the XP (so `run -f`, `info`, `ls` know it), then submit its job."""
    from baton.xp import slurm
    from baton.xp.launch import clear_folder, init_xp
    from baton.xp.lock import XPLock

    slurm.require_slurm()
    folder = Path(xp.folder)
    state = slurm.job_state(folder)
    if state in slurm.LIVE_STATES and not args.clear:
        raise UserError(f"XP {xp.sig} already has SLURM job {slurm.job_record(folder)['job_id']} ({state}); "  # type: ignore[index]
                        "wait for it, or --clear to cancel it and start afresh")
    if args.clear:
        slurm.cancel(folder)
        if folder.exists():
            with XPLock(folder):
                clear_folder(folder)
    init_xp(xp)
    worker = [*overrides, *(["--accept-config-change"] if args.accept_config_change else [])]
    job = slurm.submit(xp.sig, folder, worker, slurm.settings_for(xp.cfg, overrides))
    print(f"baton: XP {xp.sig} submitted as SLURM job {job}; `baton info -f {xp.sig} -t` follows it")
    return 0


def print_results(sig: str, folder, best_stage: str, best_name: str, seconds: float | None = None) -> None:
    """The end of a finished run: the numbers that matter per epoch, and where everything is;
    `seconds`, when given, is how long this invocation ran the XP (training, evaluation and
    samples; not the start of Python).

    Columns: the training loss, the metric the best state is chosen by, and every evaluate
    metric; `baton info -f SIG -m` shows them all.
    """
    from baton.xp.commands.common import console
    from baton.xp.commands.info import metrics_table

    history = folder.history()
    keep = {("train", "loss"), (best_stage, best_name)}
    shown = [
        {stage: {k: v for k, v in metrics.items() if (stage, k) in keep or stage == "evaluate"}
         for stage, metrics in entry.items()}
        for entry in history
    ]
    out = console()
    out.print(metrics_table(shown))
    lines = [("folder", folder.path)]
    samples = folder.path / "samples"
    if samples.is_dir():
        epochs = sorted((p for p in samples.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        if epochs:
            lines.append(("samples", epochs[-1]))
            if (epochs[-1] / "overview.png").is_file():
                lines.append(("picture", epochs[-1] / "overview.png"))
    if (folder.path / "tensorboard").is_dir():
        lines.append(("tensorboard", f"tensorboard --logdir {folder.path / 'tensorboard'}"))
    lines.append(("details", f"baton info -f {sig} -m"))
    if seconds is not None:
        lines.append(("time", f"{seconds:.0f} s in this run ({len(history)} epochs in all)"))
    for name, value in lines:
        out.print(f"{name:<12} {value}", markup=False)
    print(f"baton: XP {sig} done")
