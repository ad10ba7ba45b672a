"""One rank of a DDP run, started as torchrun would (RANK, WORLD_SIZE, MASTER_* in the env):
`python -m tests.solver.ddp_worker FOLDER OVERRIDE...`."""

from __future__ import annotations

import sys

from baton import distrib
from baton.solver.runtime import Interrupted
from tests.helpers import example_config
from tests.solver.ddp_example import DDPExample

if __name__ == "__main__":
    distrib.init("gloo")
    in_step = False
    try:
        DDPExample(example_config(sys.argv[1], *sys.argv[2:])).run()
        in_step = True
    except Interrupted:
        in_step = True
        raise
    finally:
        distrib.shutdown(in_step=in_step)
