"""One rank of the example task under FSDP, started as torchrun would start it:
`python -m tests.solver.fsdp_worker FOLDER [--kill-at-save=N:WHEN] OVERRIDE...`.

Writes FOLDER/rank<k>.pt with the model's whole weights when the run ends (gathered: every
rank joins). `--kill-at-save=N:WHEN` makes every rank SIGKILL itself during the N-th sharded
save, to show what a kill at that moment leaves behind:
  data    right after this rank wrote its shard file (the folder has no metadata yet);
  commit  once the folder is complete and renamed, before checkpoint.th names it.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch

from baton import distrib, sharded
from baton.solver.fsdp import full_tensors
from baton.tasks.example import ExampleSolver
from tests.helpers import example_config
from tests.solver.ddp_worker import run_rank


def kill_during_save(number: int, when: str) -> None:
    """Make every rank SIGKILL itself during the `number`-th sharded save, at `when`."""
    import torch.distributed.checkpoint as dcp

    saves = {"count": 0}
    write_shards, write_data = sharded.write_shards, dcp.FileSystemWriter.write_data

    def counting_write_shards(*args: Any, **kwargs: Any) -> str:
        saves["count"] += 1
        where = write_shards(*args, **kwargs)
        if when == "commit" and saves["count"] == number:
            os.kill(os.getpid(), signal.SIGKILL)
        return where

    def killing_write_data(self: Any, *args: Any, **kwargs: Any) -> Any:
        future = write_data(self, *args, **kwargs)
        if when == "data" and saves["count"] == number:
            future.wait()
            os.kill(os.getpid(), signal.SIGKILL)
        return future

    sharded.write_shards = counting_write_shards  # type: ignore[assignment]
    dcp.FileSystemWriter.write_data = killing_write_data  # type: ignore[method-assign]


class DumpingExample(ExampleSolver):
    """The example task, writing its whole weights when its run ends (every rank gathers)."""

    def run(self) -> list[dict[str, dict[str, float]]]:
        history = super().run()
        weights = full_tensors(self.model.state_dict())
        if distrib.world_size() > 1:
            assert type(self.model).__name__.startswith("FSDP"), "the engine shards the model"
        torch.save({"weights": weights, "wrapped": type(self.model).__name__},
                   Path(self.folder) / f"rank{distrib.rank()}.pt")
        return history


if __name__ == "__main__":
    folder, *overrides = sys.argv[1:]
    kill = [arg for arg in overrides if arg.startswith("--kill-at-save=")]
    overrides = [arg for arg in overrides if arg not in kill]
    if kill:
        number, when = kill[0].split("=", 1)[1].split(":")
        kill_during_save(int(number), when)
    run_rank(lambda: DumpingExample(example_config(folder, "distributed.strategy=fsdp", *overrides)))
