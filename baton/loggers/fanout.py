"""`Trackers`: what ResultLogger hands metrics and media to. It creates the trackers on first use
(TensorBoard, MLflow and W&B are slow to import), sends each call to every one of them, and
keeps training going when one fails: the failure is logged once and that tracker is dropped.

A step is never logged twice for a stage: an XP killed after a stage was logged, and resumed
from a checkpoint taken before, runs that stage again; `.tracked_steps.json` in the XP folder
holds the last step logged per stage, so MLflow and W&B continue their runs without duplicates.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..atomic import write_text_atomic
from .base import ExperimentLogger, RunInfo, build_logger, check_loggers

logger = logging.getLogger("baton")

STEPS_FILE = ".tracked_steps.json"


class Trackers:
    def __init__(self, names: list[str], logging_cfg: Any, run: RunInfo) -> None:
        self.names = check_loggers(names)
        self.cfg = logging_cfg
        self.run = run
        self._loggers: list[ExperimentLogger] | None = None
        path = run.folder / STEPS_FILE
        self.last_steps: dict[str, int] = json.loads(path.read_text()) if path.is_file() else {}

    def _active(self) -> list[ExperimentLogger]:
        if self._loggers is None:
            self._loggers = []
            for name in self.names:
                try:
                    self._loggers.append(build_logger(name, self.cfg, self.run))
                except Exception as exc:  # a server down, a store unwritable: train anyway
                    logger.warning("logger %s could not start (%s): training goes on without it", name, _line(exc))
            params = {"sig": self.run.sig, **self.run.params}
            self._each("log_hyperparams", params)
        return self._loggers

    def _each(self, method: str, *args: Any) -> None:
        for tracker in list(self._active()):
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:
                logger.warning(
                    "logger %s failed in %s (%s): it is off for the rest of this run; training goes on",
                    tracker.name, method, _line(exc),
                )
                assert self._loggers is not None
                self._loggers.remove(tracker)
                try:
                    tracker.close(False)
                except Exception:  # already broken: closing is best effort
                    pass

    def log_metrics(self, stage: str, metrics: Mapping[str, float], step: int) -> None:
        """A stage's results at `step` (the epoch), then flushed; skipped when already logged."""
        if not self.names or step <= self.last_steps.get(stage, 0):
            return
        self._each("log_metrics", stage, metrics, step)
        self._each("flush")
        self.last_steps[stage] = step
        write_text_atomic(self.run.folder / STEPS_FILE, json.dumps(self.last_steps) + "\n")

    def log_audio(self, tag: str, wav: np.ndarray, sample_rate: int, step: int) -> None:
        if self.names:
            self._each("log_audio", tag, wav, sample_rate, step)

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        if self.names:
            self._each("log_image", tag, image, step)

    def log_text(self, tag: str, text: str, step: int) -> None:
        if self.names:
            self._each("log_text", tag, text, step)

    def close(self, finished: bool) -> None:
        if self._loggers is None:
            return
        for tracker in self._loggers:
            try:
                tracker.flush()
                tracker.close(finished)
            except Exception as exc:
                logger.warning("logger %s failed while closing (%s)", tracker.name, _line(exc))
        self._loggers = None


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
