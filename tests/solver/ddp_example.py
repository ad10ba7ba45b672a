"""The example task with its model in DDP, counting gradient all-reduces (for the DDP tests)."""

from __future__ import annotations

import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from baton.tasks.example import ExampleSolver


class DDPExample(ExampleSolver):
    def build_model(self) -> None:
        super().build_model()
        self.reductions = 0
        world = dist.get_world_size()

        def count(state, bucket):  # type: ignore[no-untyped-def]  (DDP checks real annotations)
            self.reductions += 1
            work = dist.all_reduce(bucket.buffer().div_(world), async_op=True)
            return work.get_future().then(lambda fut: fut.value()[0])

        self.model = DistributedDataParallel(self.model)
        self.model.register_comm_hook(None, count)
        self.stepper.modules = [self.model]
