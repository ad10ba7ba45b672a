"""TensorBoard: scalars as `<stage>/<metric>` by epoch, audio, images and text, in `tensorboard/`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from .base import RunInfo

logger = logging.getLogger(__name__)


def _quiet_writer_threads() -> None:
    """TensorBoard writes events from a thread of its own; a write that fails there (a full
    disk) would print that thread's traceback among the training output, and the same error
    reaches baton again at the next flush, which reports it in one line and turns TensorBoard
    off. Such a thread's death is one line here too; every other thread's keeps Python's hook."""
    previous = threading.excepthook
    if getattr(previous, "_baton_tensorboard", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.thread is not None and type(args.thread).__module__.startswith("tensorboard."):
            logger.warning("TensorBoard's writer thread stopped (%s: %s)", args.exc_type.__name__, args.exc_value)
            return
        previous(args)

    hook._baton_tensorboard = True  # type: ignore[attr-defined]
    threading.excepthook = hook


class TensorBoardLogger:
    name = "tensorboard"

    def __init__(self, run: RunInfo, options: Any = None) -> None:
        # Slow to import: only runs that log pay for it.
        from torch.utils.tensorboard import SummaryWriter

        _quiet_writer_threads()
        self.writer = SummaryWriter(log_dir=str(run.folder / "tensorboard"))

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        text = "\n".join(f"    {key} = {value}" for key, value in params.items()) or "    (defaults)"
        self.writer.add_text("hyperparameters", text, 0)

    def log_metrics(self, stage: str, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(f"{stage}/{key}", value, step)

    def log_audio(self, tag: str, wav: np.ndarray, sample_rate: int, step: int) -> None:
        mono = wav if wav.ndim == 1 else wav.mean(axis=0)
        self.writer.add_audio(tag, mono[None], step, sample_rate=sample_rate)

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        self.writer.add_image(tag, image, step, dataformats="HWC")

    def log_text(self, tag: str, text: str, step: int) -> None:
        self.writer.add_text(tag, text, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self, finished: bool) -> None:
        self.writer.close()
