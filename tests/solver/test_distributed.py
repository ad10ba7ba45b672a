"""The engine under real DDP (2 gloo processes): one all-reduce per update while accumulating,
identical weights on every rank, EMA and best state through the wrapper, plain checkpoint keys,
one set of files written by rank 0, per-rank worker logs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from baton.tasks.example import ExampleSolver
from tests.helpers import example_config

WORLD = 2


class DDPExample(ExampleSolver):
    """The example task with its model wrapped in DDP, counting gradient all-reduces."""

    def build_model(self) -> None:
        super().build_model()
        self.reductions = 0

        def count(state, bucket):  # type: ignore[no-untyped-def]  (DDP checks real annotations)
            self.reductions += 1
            work = dist.all_reduce(bucket.buffer().div_(WORLD), async_op=True)
            return work.get_future().then(lambda fut: fut.value()[0])

        self.model = DistributedDataParallel(self.model)
        self.model.register_comm_hook(None, count)
        self.stepper.modules = [self.model]


def worker(rank: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=WORLD)
    try:
        cfg = example_config(Path(folder) / "xp", "optim.epochs=2", "optim.grad_accumulation=2",
                             "task.num_train=256", "logging.tensorboard=false")
        solver = DDPExample(cfg)
        history = solver.run()
        torch.save({"weights": solver.model.module.state_dict(), "reductions": solver.reductions,
                    "updates": solver.update, "history": history}, f"{folder}/rank{rank}.th")
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(180)
def test_two_ranks_train_in_lockstep(tmp_path: Path) -> None:
    mp.spawn(worker, args=(str(tmp_path),), nprocs=WORLD, join=True)
    first, second = (torch.load(tmp_path / f"rank{r}.th", weights_only=False) for r in range(WORLD))
    # 256 items, global batch 32 = 16 per rank: 8 batches per rank per epoch, 4 updates of 2.
    assert first["updates"] == second["updates"] == 8
    assert first["reductions"] == first["updates"]  # not one per micro-batch
    for key, value in first["weights"].items():
        assert torch.equal(value, second["weights"][key]), key
    assert first["history"] == second["history"]  # metrics are reduced over both ranks
    xp = tmp_path / "xp"
    assert (xp / "solver.log").exists() and (xp / "worker_1.log").exists()
    # Plain keys in the checkpoint: it resumes and exports without the DDP wrapper.
    from baton.checkpoint import exported_weights
    from baton.tasks.example import RegressionNet

    for source in ("last", "best", "ema"):
        RegressionNet(16, 64, 0.1).load_state_dict(exported_weights(xp, source))
