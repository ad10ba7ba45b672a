"""One ResultLogger per solver: progress, a summary line per stage, history.jsonl, and the
experiment trackers of `logging.loggers` (TensorBoard, MLflow, W&B, CSV; see `baton.loggers`).

Only rank 0 writes files and draws progress; other ranks log to `worker_<k>.log`, so a crash on
rank 3 is never lost in an interleaved terminal. Progress costs next to nothing per step: the
display is refreshed on a timer (TTY) or every `log_every` updates (plain lines), never per call.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import distrib
from ..atomic import write_text_atomic
from ..layout import HISTORY, SOLVER_LOG
from .base import RunInfo
from .fanout import Trackers

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def format_metrics(metrics: Mapping[str, float]) -> str:
    return " | ".join(f"{k} {_fmt(v)}" for k, v in metrics.items())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
    return str(value)


def _is_tty() -> bool:
    return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


class ProgressReporter:
    """Counts steps of one stage and shows them: a rich bar on a TTY, else periodic lines."""

    def __init__(
        self,
        name: str,
        total: int | None,
        metrics: Callable[[], Mapping[str, float]],
        logger: logging.Logger,
        *,
        rich_bar: bool,
        log_every: int,
        start: int = 0,
    ) -> None:
        self.name = name
        self.total = total
        self.done = start
        self._start_done = start
        self._metrics = metrics
        self._logger = logger
        self._log_every = max(1, log_every)
        self._next_line = start + self._log_every
        self._started = time.monotonic()
        self._next_refresh = 0.0
        self._bar: Any = None
        self._task: Any = None
        if rich_bar:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[metrics]}"),
                transient=True,
                auto_refresh=False,
            )
            self._task = self._bar.add_task(name, total=total, completed=start, rate="", metrics="")
            self._bar.start()

    def rate(self) -> float:
        elapsed = time.monotonic() - self._started
        return (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0

    def advance(self, steps: int = 1) -> None:
        self.done += steps
        if self._bar is not None:
            now = time.monotonic()
            if now >= self._next_refresh:
                self._next_refresh = now + 0.2
                self._bar.update(
                    self._task,
                    completed=self.done,
                    rate=f"{self.rate():.1f} it/s",
                    metrics=format_metrics(self._metrics()),
                )
                self._bar.refresh()
        elif self.done >= self._next_line:
            self._next_line = self.done + self._log_every
            total = f"/{self.total}" if self.total else ""
            self._logger.info(
                "%s %d%s | %.1f it/s | %s",
                self.name,
                self.done,
                total,
                self.rate(),
                format_metrics(self._metrics()),
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class ResultLogger:
    """Where a solver's results go. Files are written by rank 0 only.

    Log records go through the process-wide "baton" logger, so one XP's log file is open at a
    time: a new ResultLogger (the next XP of a grid, a notebook's next solver) closes the
    previous one, which would otherwise receive the new XP's lines too.
    """

    _open: ResultLogger | None = None

    def __init__(self, folder: Path | None, logging_cfg: Any, run: RunInfo | None = None) -> None:
        """`folder` None: the terminal only (a Brain built without an output folder).

        Args:
            run: the XP's signature and config delta, which trackers record.
        Raises:
            ConfigError: `logging.loggers` names an unknown tracker or one not installed.
        """
        self.folder = None if folder is None else Path(folder)
        self.cfg = logging_cfg
        self.logger = logging.getLogger("baton")
        self._handlers: list[logging.Handler] = []
        names = [str(n) for n in (logging_cfg.get("loggers") or [])]
        if not logging_cfg.get("tensorboard", True):  # the older switch still turns it off
            names = [n for n in names if n != "tensorboard"]
        if self.folder is None or not distrib.is_rank_zero():
            names = []  # rank 0 writes; a Brain without a folder logs to the terminal only
        run = run if run is not None else RunInfo(self.folder or Path.cwd(), None)
        self.trackers = Trackers(names, logging_cfg, run)
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        if ResultLogger._open is not None:
            ResultLogger._open.close()
        ResultLogger._open = self
        self._setup_handlers()

    def _setup_handlers(self) -> None:
        level = getattr(logging, str(self.cfg.level).upper(), logging.INFO)
        self.logger.setLevel(level)
        if self.folder is not None:
            name = SOLVER_LOG if distrib.is_rank_zero() else f"worker_{distrib.rank()}.log"
            file_handler = logging.FileHandler(self.folder / name)
            file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
            self._handlers.append(file_handler)
        root_configured = bool(logging.getLogger().handlers)
        has_console = any(getattr(h, "_baton_console", False) for h in self.logger.handlers)
        if distrib.is_rank_zero() and not root_configured and not has_console:
            console = logging.StreamHandler(sys.stdout)
            console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
            console._baton_console = True  # type: ignore[attr-defined]
            self._handlers.append(console)
        for handler in self._handlers:
            self.logger.addHandler(handler)

    def progress(
        self,
        name: str,
        total: int | None,
        metrics: Callable[[], Mapping[str, float]],
        start: int = 0,
    ) -> ProgressReporter:
        rich_bar = bool(self.cfg.progress) and _is_tty() and distrib.is_rank_zero()
        return ProgressReporter(
            name,
            total,
            metrics,
            self.logger,
            rich_bar=rich_bar,
            log_every=int(self.cfg.log_every),
            start=start,
        )

    def log_summary(self, stage: str, epoch: int, metrics: Mapping[str, float]) -> None:
        summary = format_metrics(metrics) if metrics else "done"
        self.logger.info("%s | epoch %d | %s", stage.capitalize(), epoch, summary)
        self.log_scalars(stage, metrics, epoch)

    def log_scalars(self, prefix: str, metrics: Mapping[str, float], step: int) -> None:
        """Metrics under `prefix` at `step` to every tracker (`logging.loggers`), once per step."""
        self.trackers.log_metrics(prefix, metrics, step)

    def start_tracking(self) -> None:
        """Start the trackers before training; one that cannot start stops the run (see
        `Trackers.start`), unless `logging.required=false`."""
        self.trackers.check(required=bool(self.cfg.get("required", True)))

    @property
    def tracking(self) -> bool:
        """Whether any tracker takes results here (rank 0 with `logging.loggers`): media worth
        preparing (a spectrogram image) only then."""
        return bool(self.trackers.names)

    def log_audio(self, tag: str, wav: Any, sample_rate: int, step: int) -> None:
        """An audio clip (a tensor or array, [time] or [channels, time]) to the trackers that
        take audio (TensorBoard, MLflow as a WAV artifact, W&B)."""
        self.trackers.log_audio(tag, _numpy(wav), sample_rate, step)

    def log_image(self, tag: str, image: Any, step: int) -> None:
        """An image, uint8 [height, width, 3], e.g. from `baton.loggers.spectrogram`."""
        self.trackers.log_image(tag, _numpy(image), step)

    def log_text(self, tag: str, text: str, step: int) -> None:
        self.trackers.log_text(tag, text, step)

    def write_history(self, history: list[dict[str, dict[str, float]]]) -> None:
        """Rewrite history.jsonl from the in-memory history (atomic, rank 0)."""
        if not distrib.is_rank_zero() or self.folder is None:
            return
        lines = "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in history)
        write_text_atomic(self.folder / HISTORY, lines)

    def close(self, finished: bool = True) -> None:
        """Close the trackers (`finished`: the run is complete, not stopped) and the log files."""
        if ResultLogger._open is self:
            ResultLogger._open = None
        self.trackers.close(finished)
        for handler in self._handlers:
            self.logger.removeHandler(handler)
            handler.close()
        self._handlers = []


def _numpy(value: Any) -> Any:
    if hasattr(value, "detach"):  # a tensor
        return value.detach().float().cpu().numpy()
    return value
