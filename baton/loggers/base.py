"""The interface every tracker implements, and how `logging.loggers` picks them.

A tracker receives a stage's metrics once, at the stage's end (`log_metrics(stage, metrics,
step=epoch)`), the run's parameters once (`log_hyperparams`: the XP's signature and config
delta), and media when a stage produces them (`log_audio`, `log_image`, `log_text`). Each
tracker resumes its own run when the XP resumes (an MLflow run id, a W&B run id equal to the
signature, the same TensorBoard folder); `ResultLogger` never hands it a step it already has.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class RunInfo:
    """What identifies a run to a tracker."""

    folder: Path              # the XP folder (trackers keep their resume ids in it)
    sig: str | None           # the XP's signature: the run's name (and W&B's run id)
    params: dict[str, Any] = field(default_factory=dict)  # the config delta, by dotted key
    root: Path | None = None  # the XP root, for stores shared by an XP root's XPs (MLflow)


class ExperimentLogger(Protocol):
    name: str

    def log_hyperparams(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, stage: str, metrics: Mapping[str, float], step: int) -> None: ...

    def log_audio(self, tag: str, wav: np.ndarray, sample_rate: int, step: int) -> None:
        """`wav`: float32 [time] or [channels, time] in [-1, 1]."""

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        """`image`: uint8 [height, width, 3]."""

    def log_text(self, tag: str, text: str, step: int) -> None: ...

    def flush(self) -> None: ...

    def close(self, finished: bool) -> None: ...


# name -> (module, class, the pip extra its package comes with, or None when always installed)
_BACKENDS = {
    "tensorboard": ("baton.loggers.tensorboard_logger", "TensorBoardLogger", None),
    "mlflow": ("baton.loggers.mlflow_logger", "MLflowLogger", "mlflow"),
    "wandb": ("baton.loggers.wandb_logger", "WandbLogger", "wandb"),
    "csv": ("baton.loggers.csv_logger", "CSVLogger", None),
}


def check_loggers(names: list[str]) -> list[str]:
    """The tracker names, once each, checked without importing their packages (cheap, at start-up).

    Raises:
        ConfigError: an unknown tracker, or one whose package is not installed (naming the extra).
    """
    for name in names:
        if name not in _BACKENDS:
            raise ConfigError(f"logging.loggers: unknown logger '{name}'; use {', '.join(_BACKENDS)}")
        extra = _BACKENDS[name][2]
        if extra is not None and importlib.util.find_spec(extra) is None:
            raise ConfigError(
                f"logging.loggers includes {name} but the {extra} package is not installed: "
                f"pip install 'baton[{extra}]', or remove {name} from logging.loggers"
            )
    return list(dict.fromkeys(names))


def probe_logger(name: str, logging_cfg: Any, run: RunInfo) -> None:
    """Check that tracker `name` can start, without starting it (its class's `probe(run,
    options)`, when it has one: MLflow opens its store). Raises what starting would raise."""
    module_name, class_name, _ = _BACKENDS[name]
    options = logging_cfg.get(name) if hasattr(logging_cfg, "get") else None
    probe = getattr(getattr(importlib.import_module(module_name), class_name), "probe", None)
    if probe is not None:
        probe(run, options)


def build_logger(name: str, logging_cfg: Any, run: RunInfo) -> ExperimentLogger:
    """Tracker `name` (checked by `check_loggers`), configured by `logging.<name>`."""
    module_name, class_name, _ = _BACKENDS[name]
    options = logging_cfg.get(name) if hasattr(logging_cfg, "get") else None
    cls = getattr(importlib.import_module(module_name), class_name)
    logger: ExperimentLogger = cls(run, options)
    return logger
