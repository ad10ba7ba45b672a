"""`baton run -d`: one process per local device, started by PyTorch's own launcher.

The launcher is `torch.distributed.run` (what the `torchrun` command runs), called in this
process: it starts the workers with the rendezvous environment (RANK, WORLD_SIZE, MASTER_*),
watches them, and when one dies stops the others. Each worker runs this same command without
`-d`: it sees the world in its environment and joins it, exactly as under an outer `torchrun`
or `srun`. Rank 0 prints to the terminal; every rank's output is also kept in
`<xp>/distrib_logs/`, and the engine logs rank k to `worker_<k>.log`.

The rendezvous port is derived from the XP's signature (so two XPs on one machine do not
collide) and checked free before the start.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from baton.errors import UserError

PORT_BASE, PORT_SPAN = 29_500, 20_000  # derived ports fall in 29500..49499
LOGS = "distrib_logs"  # every rank's stdout/stderr, per attempt, inside the XP folder
_OWN_FLAGS = ("-d", "--distrib")  # dropped from the workers' command (with --nproc N)


def nproc_for(requested: int | None, device: str) -> int:
    """Workers to start: `--nproc`, else one per visible GPU.

    Raises:
        UserError: no `--nproc` and no GPU, or a count below 1.
    """
    import torch

    if requested is not None:
        if requested < 1:
            raise UserError(f"--nproc {requested}: give 1 or more processes")
        return requested
    if device.startswith("cpu") or not torch.cuda.is_available():
        raise UserError("baton run -d: no GPU here; give --nproc N to start N CPU processes (gloo)")
    return torch.cuda.device_count()


def free_port(sig: str, host: str = "127.0.0.1", tries: int = 64) -> int:
    """A free TCP port derived from `sig`: the same XP asks for the same port first.

    Raises:
        UserError: none of `tries` ports from the derived one is free.
    """
    start = PORT_BASE + int(sig[:8], 16) % PORT_SPAN
    for offset in range(tries):
        port = PORT_BASE + (start - PORT_BASE + offset) % PORT_SPAN
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise UserError(f"baton run -d: no free port in {start}..{start + tries - 1}; stop other distributed runs or free a port")


def worker_command(argv: Sequence[str]) -> list[str]:
    """This process's command line without `-d`/`--nproc N`: what each worker runs, as the
    module this process was started as (`python -m baton`, or the `baton` script)."""
    args, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in _OWN_FLAGS:
            continue
        if arg == "--nproc":
            skip = True
            continue
        if arg.startswith("--nproc="):
            continue
        args.append(arg)
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    module = spec.name if spec is not None and spec.name != "baton.__main__" else "baton"
    return ["--module", module, *args]


def launch(sig: str, folder: Path, nproc: int, argv: Sequence[str]) -> int:
    """Run the workers to the end. Returns 0 when every rank succeeded, else the failed rank's
    exit code (128 + signal for a signal), after printing one line that names the rank."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    port = free_port(sig)
    logs = folder / LOGS
    logs.mkdir(parents=True, exist_ok=True)
    launcher_args = [
        "--nnodes", "1", "--nproc-per-node", str(nproc), "--max-restarts", "0",
        "--master-addr", "127.0.0.1", "--master-port", str(port), "--rdzv-id", sig,
        "--log-dir", str(logs), "--tee", "3", "--local-ranks-filter", "0",
        *worker_command(argv),
    ]
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    print(f"baton: {nproc} processes for XP {sig} (rendezvous 127.0.0.1:{port}; logs in {logs})", flush=True)
    try:
        run(parse_args(launcher_args))
    except ChildFailedError as failed:
        rank, failure = failed.get_first_failure()
        code = failure.exitcode
        if code is not None and code < 0:  # killed by a signal
            how, code = f"was killed by {_signal_name(-code)}", 128 - code
        else:
            how = f"exited with code {code}"
        stopped = code in (128 + signal.SIGTERM, 128 + signal.SIGINT, 128 + signal.SIGUSR1)
        if stopped:
            print(f"baton: XP {sig} stopped on a signal (rank {rank} exited with code {code}); `baton run -d -f {sig}` resumes it", file=sys.stderr)
        else:
            print(
                f"baton: rank {rank} (pid {failure.pid}) {how}; the other ranks were stopped. "
                f"Its output: {_rank_log(logs, failure.local_rank)}", file=sys.stderr,
            )
        return int(code or 1)
    return 0


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _rank_log(logs: Path, local_rank: int) -> str:
    found = sorted(logs.glob(f"**/attempt_*/{local_rank}/stderr.log"), key=lambda p: p.stat().st_mtime)
    return str(found[-1]) if found else str(logs)
