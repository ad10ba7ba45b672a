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


def check_loop_config(cfg: Any) -> None:
    """Fail at start-up, not after an epoch, on loop settings that cannot work."""
    optim = cfg.optim
    if int(optim.grad_accumulation) < 1:
        raise ConfigError(f"optim.grad_accumulation={optim.grad_accumulation}; it must be >= 1")
    if optim.accumulation_remainder not in ("drop", "step"):
        raise ConfigError(
            f"optim.accumulation_remainder='{optim.accumulation_remainder}'; use drop or step"
        )
    if optim.updates_per_epoch is not None and int(optim.updates_per_epoch) < 1:
        raise ConfigError(f"optim.updates_per_epoch={optim.updates_per_epoch}; use null or >= 1")
    if cfg.best_metric.direction not in ("min", "max"):
        raise ConfigError(f"best_metric.direction='{cfg.best_metric.direction}'; use min or max")


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
    """Items in a batch: the leading size of its first tensor (1 if it holds none)."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.ndim else 1
    if hasattr(batch, "__len__") and not isinstance(batch, (Mapping, list, tuple, str)):
        return len(batch)  # a batch class that knows its size (e.g. AudioBatch)
    if isinstance(batch, Mapping):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for value in batch:
            if isinstance(value, (torch.Tensor, Mapping, list, tuple)):
                return batch_size_of(value)
    return 1


class StopSignal:
    """Turns SIGTERM / SIGUSR1 into a flag the loop checks at the next update.

    A handler must not do I/O (it may fire inside a checkpoint write), so it only records the
    signal; the solver saves a checkpoint at the next safe point and stops.
    """

    SIGNALS = ("SIGTERM", "SIGUSR1")

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum

    def install(self) -> None:
        for name in self.SIGNALS:
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                return

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


class Interrupted(SystemExit):
    """Raised after a stop signal, once the checkpoint is on disk.

    A SystemExit with code 128 + signal number, as a shell reports a process killed by that
    signal: launchers tell "stopped, resumable" from "done", and no traceback is printed.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum
