"""The example task under several ranks, counting gradient all-reduces (for the DDP tests).

The engine wraps the model in DDP when training starts (`prepare`); this subclass only adds a
communication hook to the engine's wrapper, to count the all-reduces."""

from __future__ import annotations

import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from baton.tasks.example import ExampleSolver


class DDPExample(ExampleSolver):
    reductions = 0

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
