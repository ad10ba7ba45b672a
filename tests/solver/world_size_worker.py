"""One rank of the world-size resume test, started as torchrun would (see `ranks.py`):
`python -m tests.solver.world_size_worker FOLDER RECORDS [--stop-at-update=N] OVERRIDE...`.

The example task, recording what it trains on: for every training batch, each rank appends
{"epoch", "update", "items"} (the update it belongs to, counted from the start of training, and
its items' dataset indices) to RECORDS/rank<k>.jsonl. With `--stop-at-update=N`, rank 0 sends
itself a real SIGTERM during update N, as a preemption would; the ranks agree on the stop at
the next update whose count is a multiple of 10, checkpoint there and exit with 143.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset

from baton import distrib
from baton.tasks.example import ExampleSolver
from tests.helpers import example_config
from tests.solver.ddp_worker import run_rank


class Indexed(Dataset):
    """(x, y, index): the item and where it is in the dataset."""

    def __init__(self, base: Any) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> Any:
        return (*self.base[index], index)


class RecordingExample(ExampleSolver):
    def __init__(self, cfg: Any, records: Path, stop_at: int | None) -> None:
        self.records, self.stop_at = records / f"rank{distrib.rank()}.jsonl", stop_at
        super().__init__(cfg)

    def build_dataloaders(self) -> None:
        super().build_dataloaders()
        train = self.dataloaders["train"]
        self.dataloaders["train"] = DataLoader(  # the same sampler, order and batch size
            Indexed(train.dataset), batch_size=train.batch_size, sampler=train.sampler,
            drop_last=train.drop_last, generator=train.generator,
        )

    def run_step(self, idx: int, batch: Any, metrics: dict[str, Any]) -> dict[str, Any]:
        if not self.is_training:
            return super().run_step(idx, batch, metrics)
        x, y, index = batch
        line = {"epoch": self.epoch, "update": self.update_count, "items": index.tolist()}
        with self.records.open("a") as out:
            out.write(json.dumps(line) + "\n")
        if self.update_count == self.stop_at and distrib.rank() == 0:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().run_step(idx, (x, y), metrics)


if __name__ == "__main__":
    folder, records, *overrides = sys.argv[1:]
    stops = [arg for arg in overrides if arg.startswith("--stop-at-update=")]
    stop_at = int(stops[0].split("=", 1)[1]) if stops else None
    config = [arg for arg in overrides if arg not in stops]
    run_rank(lambda: RecordingExample(example_config(folder, *config), Path(records), stop_at))
