"""GradientStepper under real DDP (2 processes, gloo): accumulating with `no_sync` and syncing
on the last micro-batch gives the same update as one process over all the data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from baton.optim import GradientStepper

WORLD, MICRO = 2, 3


def batches() -> list[list[torch.Tensor]]:
    """batches()[rank][micro]: each rank's micro-batches, the same in every process."""
    gen = torch.Generator().manual_seed(0)
    return [[torch.randn(4, 5, generator=gen) for _ in range(MICRO)] for _ in range(WORLD)]


def fresh_model() -> nn.Linear:
    torch.manual_seed(1)
    return nn.Linear(5, 1)


def worker(rank: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=WORLD)
    model = DistributedDataParallel(fresh_model())
    reductions = []
    hook = lambda state, bucket: reductions.append(1) or dist.all_reduce(  # noqa: E731
        bucket.buffer().div_(WORLD), async_op=True).get_future().then(lambda f: f.value()[0])
    model.register_comm_hook(None, hook)
    stepper = GradientStepper(torch.optim.SGD(model.parameters(), lr=0.1), modules=[model])
    stepper.start_group(MICRO)
    for x in batches()[rank]:
        with stepper.micro_batch():
            stepper.step(model(x).pow(2).mean())
    if rank == 0:
        torch.save({"weights": model.module.state_dict(), "reductions": len(reductions)},
                   f"{folder}/rank0.th")
    dist.barrier()  # no rank tears gloo down while another still uses it
    del model, stepper, hook  # DDP's reducer and the hook hold the process group: gone first
    dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_accumulation_under_ddp_matches_one_process(tmp_path: Path) -> None:
    mp.spawn(worker, args=(str(tmp_path),), nprocs=WORLD, join=True)
    result = torch.load(tmp_path / "rank0.th")
    assert result["reductions"] == 1  # one all-reduce per update, not one per micro-batch

    model = fresh_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    everything = [x for rank in batches() for x in rank]
    loss = sum(model(x).pow(2).mean() for x in everything) / len(everything)
    loss.backward()
    optimizer.step()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(result["weights"][key], value)


def nan_worker(rank: int, folder: str) -> None:
    """Three updates; at update 1 only rank 1's loss is NaN."""
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=WORLD)
    model = DistributedDataParallel(fresh_model())
    stepper = GradientStepper(torch.optim.SGD(model.parameters(), lr=0.1), modules=[model], nonfinite_patience=3)
    for update, x in enumerate(batches()[rank]):
        stepper.start_group(1)
        loss = model(x).pow(2).mean()
        stepper.step(loss * float("nan") if update == 1 and rank == 1 else loss)
    torch.save({"weights": model.module.state_dict(), "nonfinite": stepper.nonfinite_losses,
                "in_a_row": stepper.nonfinite_in_a_row}, f"{folder}/rank{rank}.th")
    dist.barrier()
    del model, stepper  # DDP's reducer holds the process group: gone before it is destroyed
    dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_a_nan_loss_on_one_rank_skips_that_update_on_every_rank(tmp_path: Path) -> None:
    """The bad rank backpropagates NaN instead of leaving the all-reduce: no rank hangs, and
    all of them read the same verdict from the reduced gradients."""
    mp.spawn(nan_worker, args=(str(tmp_path),), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{rank}.th") for rank in range(WORLD)]
    assert [r["nonfinite"] for r in ranks] == [0, 1]  # counted where it happened
    model = fresh_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for update in (0, 2):  # update 1 skipped everywhere
        optimizer.zero_grad()
        loss = sum(model(batches()[rank][update]).pow(2).mean() for rank in range(WORLD)) / WORLD
        loss.backward()
        optimizer.step()
    for r in ranks:
        assert r["in_a_row"] == 0  # update 2 was good again
        for key, value in model.state_dict().items():
            torch.testing.assert_close(r["weights"][key], value)
