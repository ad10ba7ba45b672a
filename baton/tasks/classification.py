"""Audio classification, written as a SpeechBrain-style Brain: log-mel features, a small CNN,
cross-entropy, accuracy and error rate per stage.

It runs two ways. From Python, like any SpeechBrain recipe (`ClassificationBrain(modules,
opt_class, hparams, run_opts, checkpointer).fit(...)`), or as an XP,
`baton run solver=classification/debug`, where `from_config` builds what a recipe's hparams
file would (the model, the optimizer, an EpochCounter, a Checkpointer in `<xp>/save`) and
`run` fits and then evaluates the best checkpoint by validation error on the test split.

The trained model is baton's stand-in for the pretrained audio classifiers that score
generated audio (FAD/KLD): `baton.load_model(SIG)` gives the `AudioClassifier`, whose
`embed(wav, lengths)` is the embedding to compare (in eval mode; see AudioClassifier).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..data.builders import audio_dataset
from ..data.collate import AudioBatch, collate_audio
from ..errors import ConfigError
from ..models.classifier import AudioClassifier
from ..optim import build_lr_scheduler
from ..solver.registry import register_solver
from ..solver.runtime import per_rank_batch_size
from ..solver.stage import Stage
from ..speechbrain.brain import Brain
from ..speechbrain.checkpointer import Checkpointer
from ..speechbrain.epoch_counter import EpochCounter
from ..stateful import seed_everything

CHECKPOINTS = "save"  # the Checkpointer's folder inside the XP folder (SpeechBrain's save_folder)


@register_solver("classification")
class ClassificationBrain(Brain):
    epoch_counter: EpochCounter  # set by from_config, for run()
    datasets: dict[str, Any]

    def compute_forward(self, batch: AudioBatch, stage: Stage) -> torch.Tensor:
        batch = batch.to(self.device)
        return self.modules["model"](batch.wav, batch.lengths)

    def compute_objectives(self, predictions: torch.Tensor, batch: AudioBatch, stage: Stage) -> torch.Tensor:
        labels = batch.labels.to(self.device)  # type: ignore[union-attr]
        loss = F.cross_entropy(predictions.float(), labels, label_smoothing=self.hparams.label_smoothing if stage == Stage.TRAIN else 0.0)
        accuracy = (predictions.argmax(-1) == labels).float().mean()
        # Into the stage's running metrics: averaged over items and ranks, logged, in history.
        self.stage_metrics.update({"accuracy": accuracy, "error": 1 - accuracy}, count=len(labels))
        return loss

    def init_optimizers(self) -> None:
        super().init_optimizers()
        self.scheduler = None
        if self.optimizer is not None and "schedule" in vars(self.hparams):
            self.scheduler = build_lr_scheduler(self.optimizer, self.hparams.schedule, self.total_updates)
        if self.scheduler is not None and self.checkpointer is not None:
            self.checkpointer.add_recoverable("scheduler", self.scheduler)

    def on_fit_batch_end(self, batch: Any, outputs: Any, loss: torch.Tensor, should_step: bool) -> None:
        if should_step and self.scheduler is not None:
            self.scheduler.step()

    def on_stage_end(self, stage: Stage, stage_loss: float | None, epoch: Any = None) -> None:
        if stage == Stage.VALID and self.checkpointer is not None:
            stats = self.stage_results
            self.checkpointer.save_and_keep_only(
                meta={"error": stats["error"], "loss": stats["loss"], "epoch": epoch}, min_keys=["error"],
            )

    # ----------------------------------------------------------------- as an XP (`baton run`)
    @classmethod
    def build_model_from_config(cls, cfg: Any) -> AudioClassifier:
        """The classifier alone, from a config (its `model` section): what training builds and
        `baton.load_model` rebuilds from an XP's config.yaml."""
        model = cfg.model
        return AudioClassifier(
            num_classes=int(model.num_classes), sample_rate=int(cfg.dataset.sample_rate),
            n_mels=int(model.n_mels), n_fft=int(model.n_fft), hop_length=int(model.hop_length),
            channels=[int(c) for c in model.channels], embedding_dim=int(model.embedding_dim),
            dropout=float(model.dropout),
        )

    @classmethod
    def from_config(cls, cfg: Any, folder: str | Path | None = None) -> ClassificationBrain:
        folder = Path(folder if folder is not None else cfg.xp.folder)
        seed_everything(int(cfg.seed))  # what a recipe's `__set_seed` does: the same initial weights every run
        datasets = {"train": audio_dataset(cfg.dataset, "train", seed=int(cfg.seed))}
        classes = datasets["train"].classes
        if len(classes) != int(cfg.model.num_classes):
            raise ConfigError(
                f"model.num_classes={cfg.model.num_classes} but the training data has {len(classes)} "
                f"labels ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}); set model.num_classes={len(classes)}"
            )
        for split, name in (("valid", "valid"), ("evaluate", "test")):
            datasets[name] = audio_dataset(cfg.dataset, split, seed=int(cfg.seed), classes=classes)
        model = cls.build_model_from_config(cfg)
        counter = EpochCounter(int(cfg.optim.epochs))
        checkpointer = Checkpointer(
            folder / CHECKPOINTS, recoverables={"model": model, "counter": counter}, trusted=bool(cfg.checkpoint.trusted)
        )
        optim = cfg.optim
        opt_class = partial(torch.optim.AdamW, lr=float(optim.lr), betas=tuple(optim.betas), weight_decay=float(optim.weight_decay))
        hparams = {"label_smoothing": float(cfg.task.label_smoothing), "schedule": cfg.schedule, "classes": classes}
        brain = cls({"model": model}, opt_class, hparams, checkpointer=checkpointer, config=cfg)
        brain.epoch_counter = counter
        brain.datasets = datasets
        return brain

    def run(self) -> list[dict[str, dict[str, float]]]:
        """Fit, then evaluate the checkpoint with the lowest validation error on the test split."""
        data = self.cfg.dataset
        loader = {
            "batch_size": per_rank_batch_size(int(data.batch_size)), "collate_fn": collate_audio,
            "num_workers": int(data.num_workers),
        }
        self.fit(
            self.epoch_counter, self.datasets["train"], self.datasets["valid"],
            train_loader_kwargs={**loader, "shuffle": bool(data.shuffle), "drop_last": bool(data.drop_last)},
            valid_loader_kwargs=loader,
        )
        if self.finished:
            self.evaluate(self.datasets["test"], min_key="error", test_loader_kwargs=loader)
        return self.history
