"""What a Brain writes into its Checkpointer as the recoverable "brain", and how it is put back.

SpeechBrain's brain.ckpt holds a few counters; baton's holds the engine's whole loop state
(`solver_state`: data position, every rank's RNG, the running stage metrics) beside them, so a
checkpoint taken mid-epoch resumes at the next batch, bit for bit.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .. import distrib
from ..checkpoint import load_file
from ..errors import ConfigError
from ..solver.loop_state import solver_state

if TYPE_CHECKING:
    from .brain import Brain

logger = logging.getLogger("baton.solver")

INTRA_EPOCH_CKPT_FLAG = "brain_intra_epoch_ckpt"  # SpeechBrain's meta key for mid-epoch saves


def save_brain(brain: Brain, path: Path) -> None:
    """The Checkpointer's save hook for the Brain."""
    # The Checkpointer calls this on rank 0 only: outside the engine's hooks (a recipe's own
    # save_checkpoint after evaluate) the other ranks are not there to gather with.
    state = brain._snapshot if brain._snapshot is not None else solver_state(brain, collective=not distrib.is_distributed())
    counters = {
        "step": brain.step, "avg_train_loss": brain.avg_train_loss,
        "optimizer_step": brain.optimizer_step, "nonfinite_count": brain.nonfinite.in_a_row,
        "nonfinite_losses": brain.nonfinite.losses,
    }
    torch.save({"engine": state, "brain": counters}, path)


def recover_brain(brain: Brain, path: Path, end_of_epoch: bool) -> None:
    """Put the loop back where the checkpoint was taken. Only when fit resumes: evaluate()
    loads a best checkpoint for its weights, and the loop's record stays as it is."""
    if not brain._restoring:
        return
    if not zipfile.is_zipfile(path):  # SpeechBrain's own brain.ckpt: a few YAML counters
        logger.warning(
            "%s was written by SpeechBrain: it holds no data position or RNG state, so training "
            "resumes at the epoch its EpochCounter recorded, not bit for bit", path,
        )
        return
    data = load_file(Path(path), trusted=brain.settings.trusted_checkpoints)
    brain.load_state_dict(data["engine"])
    brain._loop_recovered = True
    counters = data["brain"]
    brain.avg_train_loss = counters["avg_train_loss"]
    brain.optimizer_step = counters["optimizer_step"]
    brain.nonfinite.in_a_row = counters["nonfinite_count"]
    brain.nonfinite.losses = counters.get("nonfinite_losses", 0)
    loop = brain.loop_state
    if end_of_epoch and loop.epoch_results:  # saved in on_stage_end: that epoch is whole
        loop.end_epoch()
    brain.result_logger.write_history(loop.history)
    where = f"update {loop.train_done} of epoch {loop.epoch}" if loop.train_done else f"the start of epoch {loop.epoch}"
    logger.info("resuming from %s at %s", path.parent if isinstance(path, Path) else path, where)


def save_unrequested(brain: Brain, *, end_of_epoch: bool) -> None:
    """A checkpoint the recipe did not ask for (mid-epoch, or a stop at an epoch's end):
    flagged in its meta, and only the newest such one is kept."""
    if brain.checkpointer is None:
        return
    brain._snapshot = brain.state_dict()  # collective; the Checkpointer writes on rank 0
    try:
        brain.checkpointer.save_and_keep_only(
            end_of_epoch=end_of_epoch, num_to_keep=1, meta={INTRA_EPOCH_CKPT_FLAG: True},
            ckpt_predicate=lambda ckpt: INTRA_EPOCH_CKPT_FLAG in ckpt.meta,
            verbosity=logging.DEBUG,
        )
    finally:
        brain._snapshot = None


def check_evaluation_key(checkpointer: Any, key: str | None) -> None:
    """evaluate(min_key=...) names a key some checkpoint's meta holds, or fails on one line."""
    saved = checkpointer.list_checkpoints()
    if key is not None and saved and not any(key in c.meta for c in saved):
        present = sorted({k for c in saved for k in c.meta} - {"unixtime", "end-of-epoch", INTRA_EPOCH_CKPT_FLAG})
        raise ConfigError(
            f"evaluate: no checkpoint in {checkpointer.checkpoints_dir} has '{key}' in its meta "
            f"(they have: {', '.join(present) or 'none'}); pass one of those, or save it in save_and_keep_only(meta=...)"
        )
