"""One rank of a DDP run, started as torchrun would (RANK, WORLD_SIZE, MASTER_* in the env):
`python -m tests.solver.ddp_worker FOLDER [--seconds-per-batch=S] OVERRIDE...`.

`--seconds-per-batch` sleeps before each batch: a run that lasts long enough for a signal to
land mid-training, without the CPU time of more batches (the numbers stay the same)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from baton import distrib
from baton.solver.runtime import Interrupted
from tests.helpers import example_config
from tests.solver.ddp_example import DDPExample


def run_rank(build: Callable[[], Any]) -> None:
    """Join the process group, build a solver and run it, then leave the group (after a
    barrier when every rank got to the end together: finished, or stopped by a signal they
    agreed on; without one after a crash, as it would never return)."""
    distrib.init("gloo")
    in_step = False
    try:
        build().run()
        in_step = True
    except Interrupted:
        in_step = True
        raise
    finally:
        distrib.shutdown(in_step=in_step)


def paced_example(folder: str, overrides: list[str]) -> DDPExample:
    pace = [arg for arg in overrides if arg.startswith("--seconds-per-batch=")]
    solver = DDPExample(example_config(folder, *[arg for arg in overrides if arg not in pace]))
    solver.seconds_per_batch = float(pace[0].split("=", 1)[1]) if pace else 0.0
    return solver


if __name__ == "__main__":
    folder, *overrides = sys.argv[1:]
    run_rank(lambda: paced_example(folder, overrides))
