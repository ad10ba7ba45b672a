"""Two gloo processes with different data must keep identical codebooks."""

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from baton.models.quantization import ResidualVectorQuantizer


def _worker(rank: int, world_size: int, folder: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world_size
    )
    try:
        torch.manual_seed(rank)  # different RNG streams: random draws must come from rank 0
        rvq = ResidualVectorQuantizer(dimension=4, n_q=2, bins=16, decay=0.9).train()
        generator = torch.Generator().manual_seed(100 + rank)
        for step in range(4):
            # Scale changes each step so some codes die and get replaced.
            x = torch.randn(2, 4, 32, generator=generator) * (1 + 2 * step) + rank
            rvq(x, frame_rate=50)
        torch.save(dict(rvq.named_buffers()), Path(folder) / f"rank{rank}.pt")
    finally:
        dist.barrier()  # no rank tears gloo down while another still uses it
        dist.destroy_process_group()


def test_codebooks_stay_identical_across_ranks(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2)
    first, second = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert first["layers.0.initialized"] == 1
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=0, msg=name)
