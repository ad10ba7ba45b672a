"""CSV: `metrics.csv` beside history.jsonl, one row per (epoch, stage, metric), for spreadsheets
and pandas. Rewritten whole (atomically) at each flush, so a kill never leaves half a row."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..atomic import write_text_atomic
from .base import RunInfo

FILE = "metrics.csv"
COLUMNS = ["epoch", "stage", "metric", "value"]


class CSVLogger:
    name = "csv"

    def __init__(self, run: RunInfo, options: Any = None) -> None:
        self.path = run.folder / FILE
        self.rows: list[list[str]] = []
        if self.path.is_file():  # a resumed XP: keep what earlier runs wrote
            self.rows = list(csv.reader(io.StringIO(self.path.read_text())))[1:]
        self._dirty = False

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        """Parameters are in the XP's config.yaml; the CSV holds metrics only."""

    def log_metrics(self, stage: str, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)):
                self.rows.append([str(step), stage, key, repr(float(value))])
                self._dirty = True

    def log_audio(self, tag: str, wav: np.ndarray, sample_rate: int, step: int) -> None:
        """Not a CSV's business (the samples are WAV files in samples/)."""

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        """Not a CSV's business."""

    def log_text(self, tag: str, text: str, step: int) -> None:
        """Not a CSV's business."""

    def flush(self) -> None:
        if not self._dirty:
            return
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(self.rows)
        write_text_atomic(self.path, out.getvalue())
        self._dirty = False

    def close(self, finished: bool) -> None:
        self.flush()
