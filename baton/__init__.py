"""baton: training pipelines for audio and speech research on PyTorch.

Kept import-light on purpose: `import baton` must cost little beyond `import torch`, so heavy
optional modules (hydra, rich, tensorboard, soundfile) are imported where they are used. The
names below are imported on first use (`baton.load_model` imports `baton.xp.load` then).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .checkpointer import Checkpoint as Checkpoint
    from .checkpointer import Checkpointer as Checkpointer
    from .checkpointer import average_checkpoints as average_checkpoints
    from .checkpointer import mark_as_loader as mark_as_loader
    from .checkpointer import mark_as_saver as mark_as_saver
    from .checkpointer import register_checkpoint_hooks as register_checkpoint_hooks
    from .distrib import ddp_init_group as ddp_init_group
    from .distrib import run_on_main as run_on_main
    from .epoch_counter import EpochCounter as EpochCounter
    from .epoch_counter import EpochCounterWithStopper as EpochCounterWithStopper
    from .experiment import create_experiment_directory as create_experiment_directory
    from .solver.brain import Brain as Brain
    from .solver.brain_options import parse_arguments as parse_arguments
    from .solver.stage import Stage as Stage
    from .xp.api import run as run
    from .xp.load import load_model as load_model

# name -> module that defines it, imported on first access. The SpeechBrain front end's names
# (Brain, Stage, Checkpointer, ...) are here so that `import baton as sb` runs a recipe, and
# HyperPyYAML's `!new:baton.Checkpointer` finds them.
_LAZY = {
    "load_model": "baton.xp.load",
    "run": "baton.xp.api",
    "Brain": "baton.solver.brain",
    "Stage": "baton.solver.stage",
    "parse_arguments": "baton.solver.brain_options",
    "create_experiment_directory": "baton.experiment",
    "run_on_main": "baton.distrib",
    "ddp_init_group": "baton.distrib",
    "Checkpointer": "baton.checkpointer",
    "Checkpoint": "baton.checkpointer",
    "register_checkpoint_hooks": "baton.checkpointer",
    "mark_as_saver": "baton.checkpointer",
    "mark_as_loader": "baton.checkpointer",
    "average_checkpoints": "baton.checkpointer",
    "EpochCounter": "baton.epoch_counter",
    "EpochCounterWithStopper": "baton.epoch_counter",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'baton' has no attribute '{name}'")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
