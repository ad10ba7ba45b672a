"""Distributed helpers: no-ops on one process, correct collectives on two (gloo)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from baton import distrib


def test_single_process_is_a_no_op() -> None:
    assert (distrib.rank(), distrib.world_size(), distrib.is_rank_zero()) == (0, 1, True)
    assert distrib.all_reduce_sum([1.0, 2.0]) == [1.0, 2.0]
    assert distrib.average_metrics({"loss": 3.0}, count=5) == {"loss": 3.0}
    assert distrib.broadcast_object({"a": 1}) == {"a": 1}
    assert distrib.rank_zero_only(lambda: "written")() == "written"


def _worker(rank: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=2)
    try:
        results = {
            "sum": distrib.all_reduce_sum([float(rank + 1)]),
            "max": distrib.all_reduce_max([float(rank), 5.0 - rank]),
            # rank 0: loss 1.0 over 30 items; rank 1: loss 4.0 over 10 items.
            "average": distrib.average_metrics({"loss": [1.0, 4.0][rank]}, count=[30, 10][rank]),
            "broadcast": distrib.broadcast_object(f"from {rank}"),
            "gather": distrib.all_gather_object(rank * 10),
            "only": distrib.rank_zero_only(lambda: rank)(),
        }
        torch.save(results, Path(folder) / f"rank{rank}.th")
    finally:
        dist.barrier()  # no rank tears gloo down while another still uses it
        dist.destroy_process_group()


def test_collectives_on_two_ranks(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path),), nprocs=2)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.th")
        assert got["sum"] == [3.0] and got["max"] == [1.0, 5.0]
        assert got["average"] == {"loss": (30 * 1.0 + 10 * 4.0) / 40}
        assert got["broadcast"] == "from 0" and got["gather"] == [0, 10]
        assert got["only"] == (0 if rank == 0 else None)
