"""The example task under several ranks, counting gradient all-reduces (for the DDP tests).

The engine wraps the model in DDP when training starts (`prepare`); this subclass only adds a
communication hook to the engine's wrapper, to count the all-reduces, and an optional pause
before each training batch (`seconds_per_batch`), which stretches a run in time, not in work."""

from __future__ import annotations

import time
from typing import Any

import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from baton.tasks.example import ExampleSolver


class DDPExample(ExampleSolver):
    reductions = 0
    seconds_per_batch = 0.0

    def run_step(self, idx: int, batch: Any, metrics: dict[str, Any]) -> dict[str, Any]:
        if self.is_training and self.seconds_per_batch:
            time.sleep(self.seconds_per_batch)
        return super().run_step(idx, batch, metrics)

    def prepare(self) -> None:
        super().prepare()
        assert isinstance(self.model, DistributedDataParallel), "the engine wraps trainable modules"
        assert self.stepper.modules == [self.model], "the stepper sees the wrapper"
        world = dist.get_world_size()

        def count(state, bucket):  # type: ignore[no-untyped-def]  (DDP checks real annotations)
            self.reductions += 1
            work = dist.all_reduce(bucket.buffer().div_(world), async_op=True)
            return work.get_future().then(lambda fut: fut.value()[0])

        self.model.register_comm_hook(None, count)
