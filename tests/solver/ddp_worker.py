"""One rank of a DDP run, started as torchrun would (RANK, WORLD_SIZE, MASTER_* in the env):
`python -m tests.solver.ddp_worker FOLDER [--seconds-per-batch=S] OVERRIDE...`.

`--seconds-per-batch` sleeps before each batch: a run that lasts long enough for a signal to
land mid-training, without the CPU time of more batches (the numbers stay the same)."""

from __future__ import annotations

import sys

from baton import distrib
from baton.solver.runtime import Interrupted
from tests.helpers import example_config
from tests.solver.ddp_example import DDPExample

if __name__ == "__main__":
    folder, *overrides = sys.argv[1:]
    pace = [arg for arg in overrides if arg.startswith("--seconds-per-batch=")]
    overrides = [arg for arg in overrides if arg not in pace]
    distrib.init("gloo")
    in_step = False
    try:
        solver = DDPExample(example_config(folder, *overrides))
        solver.seconds_per_batch = float(pace[0].split("=", 1)[1]) if pace else 0.0
        solver.run()
        in_step = True
    except Interrupted:
        in_step = True
        raise
    finally:
        distrib.shutdown(in_step=in_step)
