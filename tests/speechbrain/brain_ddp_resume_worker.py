"""One rank of a checkpointed Brain run under torchrun's environment:
`python -m tests.speechbrain.brain_ddp_resume_worker FOLDER [STOP_AT_UPDATE]`.

Saves in on_stage_end (best by valid loss), mid-epoch every 3 updates, and once more by the
recipe itself after evaluate (outside the stage hooks). With STOP_AT_UPDATE, rank 1 sends
itself SIGTERM after that update: every rank must stop at the same update, checkpointed.
Writes this rank's final weights and stage losses to FOLDER/rank<k>.pt."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch

import baton as sb
from baton import distrib
from tests.speechbrain.brain_ddp_worker import data


class Regression(sb.Brain):
    def compute_forward(self, batch, stage):
        return self.modules.model(batch[0])

    def compute_objectives(self, predictions, batch, stage):
        return torch.nn.functional.mse_loss(predictions, batch[1])

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        if should_step and self.optimizer_step == self.hparams.stop_at and distrib.rank() == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        self.losses.append((stage.value, stage_loss))
        if stage == sb.Stage.VALID:
            self.checkpointer.save_and_keep_only(meta={"loss": stage_loss}, min_keys=["loss"])


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    stop_at = int(sys.argv[2]) if len(sys.argv) > 2 else None
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Dropout(0.2), torch.nn.Linear(16, 2))
    counter = sb.EpochCounter(3)
    checkpointer = sb.Checkpointer(folder / "save", {"model": model, "counter": counter})
    brain = Regression({"model": model}, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
                       hparams={"stop_at": stop_at}, checkpointer=checkpointer,
                       run_opts={"noprogressbar": True, "ckpt_interval_steps": 3, "output_folder": str(folder)})
    brain.losses = []
    try:
        brain.fit(counter, data(64, 1), data(15, 2), train_loader_kwargs={"batch_size": 4, "shuffle": True},
                  valid_loader_kwargs={"batch_size": 4})
        brain.evaluate(data(15, 2), min_key="loss", test_loader_kwargs={"batch_size": 4})
        brain.checkpointer.save_checkpoint(name="latest")  # the recipe's own save: rank 0 writes, alone
        weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save({"weights": weights, "losses": brain.losses}, folder / f"rank{distrib.rank()}.pt")
    finally:
        # Stopped by SIGTERM too (the ranks agreed on the stop, so the barrier returns): exiting
        # with gloo still up aborted rank 1 once in a slow suite (SIGABRT, "terminate called
        # without an active exception"), as ddp_worker's ranks did before they left this way.
        del brain
        distrib.shutdown()
