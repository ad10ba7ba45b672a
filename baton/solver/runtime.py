"""Process-level settings a solver applies from its config, and small batch helpers."""

from __future__ import annotations

import logging
import signal
from collections.abc import Mapping
from typing import Any

import torch

from .. import distrib
from ..errors import ConfigError

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """`cpu`, `cuda`, `cuda:N` or `auto`. Under distributed CUDA, each rank takes its local GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name} but CUDA is not available; use device=cpu or device=auto")
        if name == "cuda" and distrib.is_distributed():
            return torch.device("cuda", distrib.local_rank())
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name} is not a device; use cpu, cuda, cuda:N or auto") from None


def apply_torch_settings(cfg: Any) -> None:
    if cfg.num_threads is not None:
        torch.set_num_threads(int(cfg.num_threads))
    if cfg.deterministic:
        # cuBLAS needs this workspace setting for deterministic matmuls.
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def per_rank_batch_size(batch_size: int) -> int:
    """`dataset.batch_size` is global: each rank takes its share, which must be whole."""
    if batch_size < 1:
        raise ConfigError(f"dataset.batch_size={batch_size}; it must be a positive number of items")
    world = distrib.world_size()
    if batch_size % world:
        raise ConfigError(
            f"dataset.batch_size={batch_size} is not divisible by the world size {world}; "
            f"set it to a multiple of {world}"
        )
    if world > 1:
        logger.info("batch size %d global, %d per rank on %d ranks", batch_size, batch_size // world, world)
    return batch_size // world


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


def batch_size_of(batch: Any) -> int:
    """Items in a batch: the leading size of its first tensor (1 if it holds none).

    Called once per batch: the common shapes (a tensor, a tuple or list of tensors) are checked
    first, before the slower abstract `Mapping` test.
    """
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.ndim else 1
    if isinstance(batch, (list, tuple)):
        values: Any = batch
    elif isinstance(batch, Mapping):
        values = batch.values()
    elif hasattr(batch, "__len__") and not isinstance(batch, str):
        return len(batch)  # a batch class that knows its size (e.g. AudioBatch)
    else:
        return 1
    for value in values:
        if isinstance(value, (torch.Tensor, list, tuple)) or isinstance(value, Mapping):
            return batch_size_of(value)
        if hasattr(value, "__len__") and not isinstance(value, (str, bytes)):
            return len(value)  # e.g. (AudioBatch, labels)
    return 1


class Interrupted(SystemExit):
    """Raised after a stop signal, once the checkpoint is on disk.

    A SystemExit with code 128 + signal number, as a shell reports a process killed by that
    signal: launchers tell "stopped, resumable" from "done", and no traceback is printed.
    """

    def __init__(self, signum: int, epoch: int | None = None) -> None:
        super().__init__(128 + signum)
        self.signum = signum
        self.epoch = epoch  # the epoch the signal came in

    def describe(self) -> str:
        """'stopped by SIGINT during epoch 3' (the epoch when known)."""
        try:
            name = signal.Signals(self.signum).name
        except ValueError:
            name = f"signal {self.signum}"
        return f"stopped by {name}" + (f" during epoch {self.epoch}" if self.epoch is not None else "")
