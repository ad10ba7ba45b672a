"""`Trackers`: what ResultLogger hands metrics and media to. It creates the trackers on first use
(TensorBoard, MLflow and W&B are slow to import), sends each call to every one of them, and
keeps training going when one fails: the failure is logged once and that tracker is dropped.

A step is never logged twice for a stage: an XP killed after a stage was logged, and resumed
from a checkpoint taken before, runs that stage again; `.tracked_steps.json` in the XP folder
holds the last step logged per stage, so MLflow and W&B continue their runs without duplicates.

The trackers run in one background thread, in the order calls were made: a stage's end only
queues its metrics (a database commit, W&B's protocol and file writes cost milliseconds that
the next stage need not wait for). `close` waits until everything queued is written.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import ConfigError
from .base import ExperimentLogger, RunInfo, build_logger, check_loggers, probe_logger

logger = logging.getLogger("baton")

STEPS_FILE = ".tracked_steps.json"
# The trackers this run goes on without, and why (`baton info` shows them): name -> reason.
OFF_FILE = ".trackers_off.json"


class Trackers:
    def __init__(self, names: list[str], logging_cfg: Any, run: RunInfo) -> None:
        self.names = check_loggers(names)
        self.cfg = logging_cfg
        self.run = run
        self._loggers: list[ExperimentLogger] | None = None
        path = run.folder / STEPS_FILE
        # Read only when tracking: without trackers (other ranks, no folder) `run.folder` is not
        # an XP folder of ours.
        self.last_steps: dict[str, int] = json.loads(path.read_text()) if self.names and path.is_file() else {}
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def _submit(self, work: Callable[[], None]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="baton-trackers", daemon=True)
            self._thread.start()
            # A solver never closed (a notebook, a script that forgot): still write what is queued.
            atexit.register(self.close, False)
        self._queue.put(work)

    def _work(self) -> None:
        while (work := self._queue.get()) is not None:
            work()

    def check(self, required: bool = True) -> None:
        """Before training, on this thread: can every tracker start (its store opens, its
        folder is writable)? One that cannot stops the run with one line, instead of a week of
        untracked training; with `required=False` (`logging.required`) it is dropped with one
        warning. The trackers themselves still start on first use (a resumed XP with nothing
        new to log starts no W&B run)."""
        if self.names:
            (self.run.folder / OFF_FILE).unlink(missing_ok=True)  # this run's account, not the last's
        for name in list(self.names):
            try:
                probe_logger(name, self.cfg, self.run)
            except Exception as exc:  # a server down, a store refused or unwritable
                if required:
                    raise ConfigError(
                        f"logger {name} could not start ({_line(exc)}); fix logging.{name}.*, drop {name} "
                        "from logging.loggers, or set logging.required=false to train without it"
                    ) from None
                logger.warning("logger %s could not start (%s): training goes on without it", name, _line(exc))
                self.names.remove(name)
                self._off(name, f"could not start: {_line(exc)}")

    def _off(self, name: str, reason: str) -> None:
        """Note in the XP folder that tracker `name` is off for this run (best effort)."""
        path = self.run.folder / OFF_FILE
        try:
            off = json.loads(path.read_text()) if path.is_file() else {}
            off[name] = reason
            path.write_text(json.dumps(off) + "\n")
        except (OSError, ValueError):
            pass

    def _active(self) -> list[ExperimentLogger]:
        if self._loggers is None:
            self._loggers = []
            for name in self.names:
                try:
                    self._loggers.append(build_logger(name, self.cfg, self.run))
                except Exception as exc:  # failed after its check passed: train anyway
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
                self._off(tracker.name, f"failed in {method}: {_line(exc)}")
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
        values = dict(metrics)

        def write() -> None:
            self._each("log_metrics", stage, values, step)
            self._each("flush")

        self._submit(write)
        self.last_steps[stage] = step
        # No fsync: losing this file to a crash only lets a step be logged again.
        tmp = self.run.folder / (STEPS_FILE + ".tmp")
        try:
            tmp.write_text(json.dumps(self.last_steps) + "\n")
            os.replace(tmp, self.run.folder / STEPS_FILE)
        except OSError as exc:  # a full disk: no empty temporary left, and the file named
            tmp.unlink(missing_ok=True)
            if exc.filename is None:
                raise OSError(exc.errno, exc.strerror, str(self.run.folder / STEPS_FILE)) from exc
            raise

    def log_audio(self, tag: str, wav: np.ndarray, sample_rate: int, step: int) -> None:
        if self.names:
            self._submit(lambda: self._each("log_audio", tag, wav, sample_rate, step))

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        if self.names:
            self._submit(lambda: self._each("log_image", tag, image, step))

    def log_text(self, tag: str, text: str, step: int) -> None:
        if self.names:
            self._submit(lambda: self._each("log_text", tag, text, step))

    def close(self, finished: bool) -> None:
        """Write everything queued, then close every tracker (`finished`: the run completed)."""
        if self._thread is None:
            return
        self._submit(lambda: self._close_all(finished))
        self._queue.put(None)
        self._thread.join()
        self._thread = None
        atexit.unregister(self.close)

    def _close_all(self, finished: bool) -> None:
        for tracker in self._loggers or []:
            try:
                tracker.flush()
                tracker.close(finished)
            except Exception as exc:
                logger.warning("logger %s failed while closing (%s)", tracker.name, _line(exc))
        self._loggers = None


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
