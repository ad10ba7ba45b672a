"""__NAME__: a StandardSolver that removes white noise from short tones.

Written by `baton new __NAME__`: a small, complete task that trains in seconds on a
CPU. Make it yours: the data in `build_dataloaders`, the model in `build_model`, the
loss in `run_step`, the metrics in `evaluate` and the samples in `generate`. The
engine owns the loop, checkpoints and exact resume, EMA, the best state, logging and
several processes. Settings: conf/solver/__NAME__.yaml, or the command line
(`baton run solver=__NAME__ task.noise=0.5`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from baton.data import write_wav
from baton.data.rng import seed_worker
from baton.data.sampler import ResumableSampler
from baton.metrics.audio import si_snr
from baton.metrics.averager import Averager
from baton.optim import build_lr_scheduler, build_optimizer
from baton.solver import StandardSolver, register_solver
from baton.solver.runtime import per_rank_batch_size
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def noisy_tones(
    num_items: int, length: int, sample_rate: int, noise: float, seed: int
) -> TensorDataset:
    """(noisy, clean) pairs of [1, length] clips: a sine of random pitch, plus noise."""
    gen = torch.Generator().manual_seed(seed)
    time = torch.arange(length) / sample_rate
    freq = 100 + 900 * torch.rand(num_items, 1, generator=gen)  # Hz
    phase = 2 * math.pi * torch.rand(num_items, 1, generator=gen)
    clean = 0.5 * torch.sin(2 * math.pi * freq * time + phase)
    noisy = clean + noise * torch.randn(num_items, length, generator=gen)
    return TensorDataset(noisy.unsqueeze(1), clean.unsqueeze(1))


class Denoiser(nn.Module):
    """A small 1-D conv net that estimates the noise and subtracts it."""

    def __init__(self, hidden: int, kernel_size: int) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.net = nn.Sequential(
            nn.Conv1d(1, hidden, kernel_size, padding=pad),
            nn.GELU(),
            nn.Conv1d(hidden, hidden, kernel_size, padding=pad),
            nn.GELU(),
            nn.Conv1d(hidden, 1, kernel_size, padding=pad),
        )

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        return noisy - self.net(noisy)


@register_solver("__NAME__")
class __CLASS__(StandardSolver):
    def build_dataloaders(self) -> None:
        """Called first: fill self.dataloaders ("train" required, "valid" optional)."""
        task, data = self.cfg.task, self.cfg.dataset
        batch_size = per_rank_batch_size(int(data.batch_size))  # global / world size
        sizes = {"train": task.num_train, "valid": task.num_valid}
        sizes["evaluate"] = task.num_valid
        for index, (split, num_items) in enumerate(sizes.items()):
            seed = task.data_seed + index
            dataset = noisy_tones(
                num_items, task.length, task.sample_rate, task.noise, seed
            )
            train = split == "train"
            self.dataloaders[split] = DataLoader(
                dataset,
                batch_size=batch_size,
                # Resume-exact data order: the sampler's position is checkpointed.
                sampler=ResumableSampler(  # evaluation shards unpadded: each item counts once
                    dataset, shuffle=train and data.shuffle, seed=self.cfg.seed, pad=train,
                    drop_last=train and data.drop_last,
                    global_batch=int(data.batch_size),  # the same order on any world size
                ),
                drop_last=train and data.drop_last,
                num_workers=data.num_workers,
                worker_init_fn=seed_worker,
                generator=torch.Generator(),  # never draws from the training RNG
            )

    @classmethod
    def build_model_from_config(cls, cfg: Any) -> Denoiser:
        """The model alone, untrained: `build_model` trains it, and
        `baton.load_model(SIG)` rebuilds it to load an XP's weights."""
        return Denoiser(cfg.task.hidden, cfg.task.kernel_size)

    def build_model(self) -> None:
        """Called once the loaders exist: models, optimizers, what checkpoints hold."""
        self.model = self.build_model_from_config(self.cfg).to(self.device)
        optimizer = build_optimizer(self.model, self.cfg.optim)
        scheduler = build_lr_scheduler(optimizer, self.cfg.schedule, self.total_updates)
        self.stepper = self.make_stepper(optimizer, scheduler, self.model)
        self.register_stateful("model", "stepper")  # checkpointed, restored on resume
        self.register_best("model")  # kept at the best `best_metric`
        self.register_ema("model")  # averaged when optim.ema.use

    def run_step(self, idx: int, batch: Any, metrics: dict[str, Any]) -> dict[str, Any]:
        """One batch of train or valid; returns its metrics (averaged by the stage)."""
        noisy, clean = self.to_device(batch)
        with self.autocast():
            loss = F.mse_loss(self.model(noisy).float(), clean)
        if self.is_training:
            metrics.update(self.stepper.step(loss))  # backward, clip, optimizer, LR
        metrics["loss"] = loss
        return metrics

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Every `evaluate.every` epochs and at the last, with the best state loaded."""
        average = Averager()  # weighted by batch size, reduced across ranks
        for _, batch in self.loader_batches(self.dataloaders["evaluate"]):
            noisy, clean = self.to_device(batch)
            before, after = si_snr(noisy, clean), si_snr(self.model(noisy), clean)
            metrics = {"si_snr": after.mean(), "si_snr_gain": (after - before).mean()}
            average.update(metrics, count=len(clean))
        return average.result()

    @torch.no_grad()
    def generate(self) -> dict[str, float]:
        """Every `generate.every` epochs and at the last: WAVs in samples/<epoch>/."""
        noisy, clean = self.dataloaders["evaluate"].dataset[:3]
        denoised = self.model(noisy.to(self.device)).cpu()
        folder = self.folder / "samples" / str(self.epoch)
        folder.mkdir(parents=True, exist_ok=True)
        rate = int(self.cfg.task.sample_rate)
        kinds = {"noisy": noisy, "denoised": denoised, "clean": clean}
        for index in range(len(clean)):
            for kind, wavs in kinds.items():
                write_wav(folder / f"{index}_{kind}.wav", wavs[index], rate)
        return {}
