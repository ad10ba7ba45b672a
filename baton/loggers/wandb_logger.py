"""Weights & Biases: offline by default (`wandb sync <xp>/wandb/offline-run-*` uploads later),
the run id equal to the XP's signature, so a resumed XP continues the same run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .base import RunInfo


class WandbLogger:
    name = "wandb"

    def __init__(self, run: RunInfo, options: Any = None) -> None:
        import wandb

        options = options or {}
        self.wandb = wandb
        self.run = wandb.init(
            project=str(options.get("project") or "baton"),
            entity=options.get("entity"),
            mode=str(options.get("mode") or "offline"),  # type: ignore[arg-type]  # checked by wandb
            id=run.sig, name=run.sig, resume="allow", dir=str(run.folder), reinit="create_new",
            settings=wandb.Settings(silent=True, console="off"),
        )

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        self.run.config.update(dict(params), allow_val_change=True)

    def log_metrics(self, stage: str, metrics: Mapping[str, float], step: int) -> None:
        values = {f"{stage}/{key}": value for key, value in metrics.items() if isinstance(value, (int, float))}
        if values:
            self.run.log(values, step=step)

    def log_audio(self, tag: str, wav: np.ndarray, sample_rate: int, step: int) -> None:
        mono = wav if wav.ndim == 1 else wav.mean(axis=0)
        self.run.log({tag: self.wandb.Audio(mono, sample_rate=sample_rate)}, step=step)

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        self.run.log({tag: self.wandb.Image(image)}, step=step)

    def log_text(self, tag: str, text: str, step: int) -> None:
        self.run.log({tag: self.wandb.Html(f"<pre>{text}</pre>")}, step=step)

    def flush(self) -> None:
        """W&B writes in its own process; nothing to push from here."""

    def close(self, finished: bool) -> None:
        self.run.finish(exit_code=0 if finished else 1)
