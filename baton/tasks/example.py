"""A tiny regression task: the smallest complete StandardSolver.

It learns a fixed random teacher network from noisy samples, so every part of the engine is
exercised in seconds on a CPU: EMA, best state, dropout (training randomness), evaluate on a
held-out split, and generate (predictions written under samples/<epoch>/).
"""

from __future__ import annotations

import json
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ..data.rng import seed_worker
from ..data.sampler import ResumableSampler
from ..metrics.averager import Averager
from ..optim import build_lr_scheduler, build_optimizer
from ..solver.registry import register_solver
from ..solver.runtime import per_rank_batch_size
from ..solver.standard import StandardSolver


def teacher_dataset(num_items: int, dim: int, seed: int, split: int, noise: float) -> TensorDataset:
    """Noisy targets of one fixed random teacher (from `seed`) on the inputs of a split."""
    teacher = torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed)) / dim**0.5
    gen = torch.Generator().manual_seed(seed + 1 + split)
    x = torch.randn(num_items, dim, generator=gen)
    y = torch.tanh(x @ teacher) + noise * torch.randn(num_items, dim, generator=gen)
    return TensorDataset(x, y)


class RegressionNet(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_solver("example")
class ExampleSolver(StandardSolver):
    @classmethod
    def build_model_from_config(cls, cfg: Any) -> RegressionNet:
        """The model alone, from a config: what `build_model` trains and `baton.load_model`
        rebuilds from an XP's config.yaml."""
        return RegressionNet(cfg.task.dim, cfg.task.hidden, cfg.task.dropout)

    def build_model(self) -> None:
        cfg = self.cfg
        self.model = self.build_model_from_config(cfg).to(self.device)
        optimizer = build_optimizer(self.model, cfg.optim)
        scheduler = build_lr_scheduler(optimizer, cfg.schedule, self.total_updates)
        self.stepper = self.make_stepper(optimizer, scheduler, self.model)
        self.register_stateful("model", "stepper")
        self.register_best("model")
        self.register_ema("model")

    def build_dataloaders(self) -> None:
        task, data = self.cfg.task, self.cfg.dataset
        batch_size = per_rank_batch_size(int(data.batch_size))
        splits = {"train": (task.num_train, 0), "valid": (task.num_valid, 1), "evaluate": (task.num_valid, 2)}
        for split, (num_items, index) in splits.items():
            dataset = teacher_dataset(num_items, task.dim, task.data_seed, index, task.noise)
            train = split == "train"
            self.dataloaders[split] = DataLoader(
                dataset,
                batch_size=batch_size,
                # Evaluation shards are not padded: every item counts once in the means. Training
                # drops, or wraps around to a multiple of the global batch: the same order on any
                # world size.
                sampler=ResumableSampler(dataset, shuffle=train and data.shuffle, seed=self.cfg.seed, pad=train,
                                         drop_last=train and data.drop_last, global_batch=int(data.batch_size)),
                drop_last=train and data.drop_last,
                num_workers=data.num_workers,
                worker_init_fn=seed_worker,
                generator=torch.Generator(),
            )

    def run_step(self, idx: int, batch: Any, metrics: dict[str, Any]) -> dict[str, Any]:
        x, y = self.to_device(batch)
        with self.autocast():
            loss = F.mse_loss(self.model(x).float(), y)
        if self.is_training:
            metrics.update(self.stepper.step(loss))
        metrics["loss"] = loss
        return metrics

    def evaluate(self) -> dict[str, float]:
        average = Averager()  # reduced across ranks: each rank evaluates its own shard
        for _, (x, y) in self.loader_batches(self.dataloaders["evaluate"]):
            x, y = self.to_device((x, y))
            average.update({"mse": F.mse_loss(self.model(x), y)}, count=len(x))
        mse = average.result()["mse"]
        return {"mse": mse, "rmse": mse**0.5}

    def generate(self) -> dict[str, float]:
        x, y = self.dataloaders["evaluate"].dataset[:4]
        prediction = self.model(x.to(self.device)).cpu()
        folder = self.folder / "samples" / str(self.epoch)
        folder.mkdir(parents=True, exist_ok=True)
        rows = [{"input": a.tolist(), "target": b.tolist(), "prediction": c.tolist()} for a, b, c in zip(x, y, prediction, strict=False)]
        (folder / "predictions.json").write_text(json.dumps(rows))
        return {}
