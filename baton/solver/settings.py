"""The loop's config keys, read and checked once into typed settings.

The engine reads these values on every update; reading them from the OmegaConf tree each time
costs microseconds and scatters `int(cfg...)` casts through the loop. `LoopSettings.from_config`
reads them once at construction and fails at start-up, naming the key, on a value that cannot
work, instead of after an epoch of training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

DIRECTIONS = ("min", "max")


@dataclass(frozen=True)
class MetricSpec:
    """A metric whose best value selects a state: `name` of stage `stage`, lower or higher better."""

    name: str
    stage: str = "valid"
    direction: str = "min"

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"best metric '{self.name}': direction='{self.direction}'; use min or max")

    def better(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value < best if self.direction == "min" else value > best


@dataclass(frozen=True)
class LoopSettings:
    epochs: int
    updates_per_epoch: int | None  # None: one full pass over the training data per epoch
    grad_accumulation: int
    accumulation_remainder: str  # drop | step
    seed: int
    max_norm: float | None
    nonfinite_patience: int | None  # None: no guard (a NaN loss reaches the weights)
    skip_nonfinite_grads: bool
    autocast: bool
    autocast_dtype: str
    compile: bool
    ema_use: bool
    ema_decay: float
    ema_every: int
    ema_device: str | None
    best_metric: MetricSpec
    evaluate_every: int | None
    generate_every: int | None
    valid_num_samples: int | None
    save: bool
    save_every_updates: int  # 0: off
    save_every_seconds: float  # 0: off
    keep_last: int
    keep_every: int | None
    async_save: bool
    trusted_checkpoints: bool
    find_unused_parameters: bool
    broadcast_buffers: bool
    strategy: str = "ddp"  # ddp | fsdp: how several ranks hold the model
    fsdp_blocks: tuple[str, ...] = ()
    fsdp_reshard_after_forward: bool = True

    @classmethod
    def from_config(cls, cfg: Any) -> LoopSettings:
        """Read and check the loop keys of a composed config (see conf/solver/default.yaml).

        Raises:
            ConfigError: a value that cannot work, naming its key and the fix.
        """
        optim, ckpt, best = cfg.optim, cfg.checkpoint, cfg.best_metric
        settings = cls(
            epochs=_int(optim.epochs, "optim.epochs", minimum=0),
            updates_per_epoch=_optional_int(optim.updates_per_epoch, "optim.updates_per_epoch", minimum=1),
            grad_accumulation=_int(optim.grad_accumulation, "optim.grad_accumulation", minimum=1),
            accumulation_remainder=_choice(optim.accumulation_remainder, "optim.accumulation_remainder", ("drop", "step")),
            seed=_int(cfg.seed, "seed"),
            max_norm=None if optim.max_norm is None else float(optim.max_norm),
            nonfinite_patience=_optional_int(optim.get("nonfinite_patience"), "optim.nonfinite_patience", minimum=0),
            skip_nonfinite_grads=bool(optim.get("skip_nonfinite_grads", False)),
            autocast=bool(cfg.autocast),
            autocast_dtype=str(cfg.autocast_dtype),
            compile=bool(cfg.compile),
            ema_use=bool(optim.ema.use),
            ema_decay=float(optim.ema.decay),
            ema_every=_int(optim.ema.every, "optim.ema.every", minimum=1),
            ema_device=None if optim.ema.device is None else str(optim.ema.device),
            best_metric=MetricSpec(
                str(best.name), str(best.stage),
                _choice(best.direction, "best_metric.direction", DIRECTIONS),
            ),
            evaluate_every=_optional_int(cfg.evaluate.every, "evaluate.every", minimum=0),
            generate_every=_optional_int(cfg.generate.every, "generate.every", minimum=0),
            valid_num_samples=_optional_int(cfg.dataset.valid.num_samples, "dataset.valid.num_samples", minimum=1),
            save=bool(ckpt.save),
            save_every_updates=_optional_int(ckpt.every_updates, "checkpoint.every_updates", minimum=1) or 0,
            save_every_seconds=float(ckpt.every_seconds or 0),
            keep_last=_int(ckpt.keep_last, "checkpoint.keep_last", minimum=0),
            keep_every=_optional_int(ckpt.keep_every, "checkpoint.keep_every", minimum=1),
            async_save=bool(ckpt.async_save),
            trusted_checkpoints=bool(ckpt.trusted),
            find_unused_parameters=bool(cfg.distributed.find_unused_parameters),
            broadcast_buffers=bool(cfg.distributed.broadcast_buffers),
            strategy=_choice(cfg.distributed.get("strategy", "ddp"), "distributed.strategy", ("ddp", "fsdp")),
            fsdp_blocks=tuple(str(b) for b in (cfg.distributed.get("fsdp") or {}).get("blocks") or ()),
            fsdp_reshard_after_forward=bool((cfg.distributed.get("fsdp") or {}).get("reshard_after_forward", True)),
        )
        if settings.strategy == "fsdp" and settings.autocast and settings.autocast_dtype != "bfloat16":
            raise ConfigError(
                f"distributed.strategy=fsdp with autocast_dtype={settings.autocast_dtype}: float16 needs loss "
                "scaling over sharded gradients, which baton does not do; use autocast_dtype=bfloat16"
            )
        if settings.save_every_seconds < 0:
            raise ConfigError(f"checkpoint.every_seconds={ckpt.every_seconds}; use null or a positive number")
        return settings


def _int(value: Any, key: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ConfigError(f"{key}={value!r}; it must be a whole number")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{key}={value}; it must be >= {minimum}")
    return int(value)


def _optional_int(value: Any, key: str, minimum: int | None = None) -> int | None:
    if value is None:
        return None
    if minimum is not None and isinstance(value, (int, float)) and value < minimum:
        raise ConfigError(f"{key}={value}; use null or >= {minimum}")
    return _int(value, key)


def _choice(value: Any, key: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ConfigError(f"{key}='{value}'; use {' or '.join(options)}")
    return str(value)
