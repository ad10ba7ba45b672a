"""Experiment trackers behind one interface: TensorBoard, MLflow, Weights & Biases, CSV.

`logging.loggers` names the ones a run writes to; `ResultLogger` (results.py) feeds them
at each stage's end (never per update), on rank 0 only. See `base.ExperimentLogger`.
"""

from __future__ import annotations

from .base import ExperimentLogger, RunInfo, build_logger, check_loggers

__all__ = ["ExperimentLogger", "RunInfo", "build_logger", "check_loggers"]
