#!/usr/bin/env python3
"""A small recipe written the SpeechBrain way: `python train.py hparams.yaml --output_folder X`.

Only the import differs from a SpeechBrain recipe (`import baton as sb`). The data is a noisy
3-class problem made from a fixed seed, so runs are comparable.
"""

import os
import signal
import sys

import torch
from hyperpyyaml import load_hyperpyyaml
from torch.utils.data import TensorDataset

import baton as sb


class ClassifierBrain(sb.Brain):
    def compute_forward(self, batch, stage):
        features, _ = batch
        return self.modules.model(features.to(self.device))

    def compute_objectives(self, predictions, batch, stage):
        _, labels = batch
        loss = torch.nn.functional.cross_entropy(predictions, labels.to(self.device))
        if stage != sb.Stage.TRAIN:
            self.errors += (predictions.argmax(-1) != labels).sum().item()
            self.items += len(labels)
        return loss

    def on_stage_start(self, stage, epoch=None):
        self.errors, self.items = 0, 0
        if stage == sb.Stage.VALID and epoch == self.hparams.sigterm_in_valid_of_epoch:
            os.kill(os.getpid(), signal.SIGTERM)  # as a cluster's preemption would
        worse = self.hparams.worse_at_epoch
        if stage == sb.Stage.TRAIN and worse is not None and epoch >= worse:
            for group in self.optimizer.param_groups:
                group["lr"] = self.hparams.lr * 40

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        if self.hparams.kill_at_update == self.optimizer_step:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.VALID:
            stats = {"loss": stage_loss, "error": self.errors / self.items}
            self.checkpointer.save_and_keep_only(meta=stats, min_keys=["loss"])
        if stage == sb.Stage.TEST:
            self.test_stats = {"loss": stage_loss, "error": self.errors / self.items}


def dataset(split: int, items: int) -> TensorDataset:
    gen = torch.Generator().manual_seed(100 + split)
    centers = torch.randn(3, 6, generator=torch.Generator().manual_seed(7)) * 1.5
    labels = torch.randint(0, 3, (items,), generator=gen)
    return TensorDataset(centers[labels] + torch.randn(items, 6, generator=gen), labels)


if __name__ == "__main__":
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    with open(hparams_file) as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.create_experiment_directory(hparams["output_folder"], hyperparams_to_save=hparams_file, overrides=overrides)
    brain = ClassifierBrain(hparams["modules"], hparams["opt_class"], hparams, run_opts, hparams["checkpointer"])
    loader = {"batch_size": hparams["batch_size"], "shuffle": True}
    brain.fit(hparams["epoch_counter"], dataset(0, 256), dataset(1, 128), train_loader_kwargs=loader,
              valid_loader_kwargs={"batch_size": 32})
    brain.evaluate(dataset(1, 128), min_key="loss", test_loader_kwargs={"batch_size": 32})
    print("TEST", brain.test_stats)
