"""One rank of a Brain run started as torchrun starts it (RANK, WORLD_SIZE, MASTER_* in the
environment): `python -m tests.speechbrain.brain_ddp_worker OUT_DIR BATCH_SIZE [STRATEGY]`. Writes
this rank's final weights (whole, under FSDP) and the stage losses its hooks received to
OUT_DIR/rank<k>.pt; STRATEGY is the run option distributed_strategy (ddp by default)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

import baton as sb
from baton import distrib
from baton.solver.fsdp import full_tensors


class Regression(sb.Brain):
    def compute_forward(self, batch, stage):
        return self.modules.model(batch[0])

    def compute_objectives(self, predictions, batch, stage):
        return torch.nn.functional.mse_loss(predictions, batch[1])

    def on_stage_end(self, stage, stage_loss, epoch=None):
        self.losses.append((stage.value, stage_loss))


def data(items: int, seed: int) -> TensorDataset:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(items, 4, generator=gen)
    return TensorDataset(x, x @ torch.randn(4, 2, generator=torch.Generator().manual_seed(0)) + 0.1 * torch.randn(items, 2, generator=gen))


if __name__ == "__main__":
    out, batch_size = Path(sys.argv[1]), int(sys.argv[2])
    strategy = sys.argv[3] if len(sys.argv) > 3 else "ddp"
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    brain = Regression({"model": model}, lambda p: torch.optim.SGD(p, lr=0.05),
                       run_opts={"max_grad_norm": 0, "noprogressbar": True, "grad_accumulation_factor": 2,
                                 "distributed_strategy": strategy})
    brain.losses = []
    brain.fit(range(2), data(64, 1), data(20, 2), train_loader_kwargs={"batch_size": batch_size, "shuffle": True},
              valid_loader_kwargs={"batch_size": 3})
    # The plain module: under DDP brain.modules holds its wrapper; under FSDP it holds shards.
    weights = {k: v.detach().cpu() for k, v in full_tensors(model.state_dict()).items()}
    torch.save({"weights": weights, "losses": brain.losses, "world": distrib.world_size()}, out / f"rank{distrib.rank()}.pt")
    distrib.shutdown()
