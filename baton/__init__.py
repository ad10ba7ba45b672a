"""baton: training pipelines for audio and speech research on PyTorch.

    from baton import StandardSolver, ExtensibleSolver, Brain, compose, register_solver, load_model, run

The engine's front ends (StandardSolver, ExtensibleSolver, and SpeechBrain's Brain with its
Checkpointer, EpochCounter and run options), the config (`compose`), the experiment manager
(`run`: an XP from Python; `load_model`: a trained XP's model). Kept import-light on purpose: `import baton` must cost little beyond `import torch`, so heavy
optional modules (hydra, rich, tensorboard, soundfile) are imported where they are used. The
names below are imported on first use (`baton.load_model` imports `baton.xp.load` then).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .ckpt_folders import Checkpoint as Checkpoint
    from .config import compose as compose
    from .distrib import ddp_init_group as ddp_init_group
    from .distrib import run_on_main as run_on_main
    from .optim.stepper import GradientStepper as GradientStepper
    from .solver.extensible import ExtensibleSolver as ExtensibleSolver
    from .solver.loop import BaseSolver as BaseSolver
    from .solver.registry import register_solver as register_solver
    from .solver.stage import Stage as Stage
    from .solver.standard import StandardSolver as StandardSolver
    from .speechbrain.audio_metrics import AudioMetricStats as AudioMetricStats
    from .speechbrain.averaging import average_checkpoints as average_checkpoints
    from .speechbrain.brain import Brain as Brain
    from .speechbrain.checkpointer import Checkpointer as Checkpointer
    from .speechbrain.epoch_counter import EpochCounter as EpochCounter
    from .speechbrain.epoch_counter import EpochCounterWithStopper as EpochCounterWithStopper
    from .speechbrain.experiment import create_experiment_directory as create_experiment_directory
    from .speechbrain.hooks import mark_as_loader as mark_as_loader
    from .speechbrain.hooks import mark_as_saver as mark_as_saver
    from .speechbrain.hooks import register_checkpoint_hooks as register_checkpoint_hooks
    from .speechbrain.run_options import RunOptions as RunOptions
    from .speechbrain.run_options import parse_arguments as parse_arguments
    from .xp.api import run as run
    from .xp.load import load_model as load_model

# name -> module that defines it, imported on first access. The SpeechBrain front end's names
# (Brain, Stage, Checkpointer, ...) are here so that `import baton as sb` runs a recipe, and
# HyperPyYAML's `!new:baton.Checkpointer` finds them.
_LAZY = {
    "StandardSolver": "baton.solver.standard",
    "ExtensibleSolver": "baton.solver.extensible",
    "BaseSolver": "baton.solver.loop",
    "GradientStepper": "baton.optim.stepper",
    "register_solver": "baton.solver.registry",
    "compose": "baton.config",
    "load_model": "baton.xp.load",
    "run": "baton.xp.api",
    "Brain": "baton.speechbrain.brain",
    "Stage": "baton.solver.stage",
    "parse_arguments": "baton.speechbrain.run_options",
    "RunOptions": "baton.speechbrain.run_options",
    "create_experiment_directory": "baton.speechbrain.experiment",
    "run_on_main": "baton.distrib",
    "ddp_init_group": "baton.distrib",
    "Checkpointer": "baton.speechbrain.checkpointer",
    "Checkpoint": "baton.ckpt_folders",
    "register_checkpoint_hooks": "baton.speechbrain.hooks",
    "mark_as_saver": "baton.speechbrain.hooks",
    "mark_as_loader": "baton.speechbrain.hooks",
    "average_checkpoints": "baton.speechbrain.averaging",
    "AudioMetricStats": "baton.speechbrain.audio_metrics",
    "EpochCounter": "baton.speechbrain.epoch_counter",
    "EpochCounterWithStopper": "baton.speechbrain.epoch_counter",
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
