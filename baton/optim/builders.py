"""Optimizers and LR schedulers from the `optim` and `schedule` config sections."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .lamb import Lamb

OPTIMIZERS = ("adam", "adamw", "sgd", "lamb")
SCHEDULERS = ("none", "cosine", "linear_warmup", "step", "inverse_sqrt")


def param_groups(
    modules: nn.Module | Iterable[nn.Module], weight_decay: float, decay_norms_and_biases: bool
) -> list[dict[str, Any]]:
    """Split parameters so that norms and biases (tensors of rank <= 1) get no weight decay.

    Decaying a LayerNorm gain or a bias towards zero only hurts; this is the usual recipe
    (GPT-2, AudioCraft). With `decay_norms_and_biases` every parameter is decayed.
    """
    if isinstance(modules, nn.Module):
        modules = [modules]
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    if decay_norms_and_biases or weight_decay == 0:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(modules: nn.Module | Iterable[nn.Module], optim_cfg: Any) -> torch.optim.Optimizer:
    """An optimizer over the trainable parameters of `modules` from the `optim` config section."""
    name = optim_cfg.optimizer
    groups = param_groups(modules, float(optim_cfg.weight_decay), bool(optim_cfg.decay_norms_and_biases))
    lr = float(optim_cfg.lr)
    beta1, beta2 = (float(b) for b in optim_cfg.betas)
    betas = (beta1, beta2)
    eps = float(optim_cfg.eps)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, eps=eps)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float(optim_cfg.momentum))
    if name == "lamb":
        return Lamb(groups, lr=lr, betas=betas, eps=eps)
    raise ConfigError(f"optim.optimizer='{name}' is unknown; choose one of {', '.join(OPTIMIZERS)}")


def lr_lambda(schedule_cfg: Any, total_updates: int) -> Any:
    """The multiplier of the base LR after `update` updates, or None for a constant LR."""
    name = schedule_cfg.lr_scheduler
    warmup = int(schedule_cfg.warmup)

    def warm(update: int) -> float:
        return min(1.0, (update + 1) / warmup) if warmup > 0 else 1.0

    if name == "none":
        return None
    if name == "cosine":
        final = float(schedule_cfg.final_lr_ratio)

        def cosine(update: int) -> float:
            if update < warmup:
                return warm(update)
            progress = min(1.0, (update - warmup) / max(1, total_updates - warmup))
            return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))

        return cosine
    if name == "linear_warmup":
        return warm
    if name == "step":
        step_size, gamma = int(schedule_cfg.step_size), float(schedule_cfg.gamma)
        return lambda update: warm(update) * gamma ** (update // step_size)
    if name == "inverse_sqrt":
        pivot = max(warmup, 1)
        return lambda update: warm(update) if update < warmup else math.sqrt(pivot / (update + 1))
    raise ConfigError(
        f"schedule.lr_scheduler='{name}' is unknown; choose one of {', '.join(SCHEDULERS)}"
    )


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer, schedule_cfg: Any, total_updates: int
) -> torch.optim.lr_scheduler.LambdaLR | None:
    """A per-update scheduler (stepped after each optimizer update), or None when constant."""
    fn = lr_lambda(schedule_cfg, total_updates)
    return None if fn is None else torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
