"""SpeechBrain's front end on the baton engine: `Brain`, run options, the `Checkpointer` and
its hooks, `EpochCounter`, `create_experiment_directory`, and `AudioMetricStats` (ViSQOL, PESQ,
STOI, ... in MetricStats' shape).

A layer over the engine (`baton.solver`), never the other way round. `import baton as sb`
reaches every name here (see `baton/__init__.py`), so a recipe runs after changing its import
line; docs/brain.md says what ports unchanged and what stays imported from SpeechBrain.
"""

from ..ckpt_folders import Checkpoint, ckpt_recency
from ..solver.stage import Stage
from .audio_metrics import AudioMetricStats
from .averaging import average_checkpoints
from .brain import Brain
from .checkpointer import Checkpointer
from .epoch_counter import EpochCounter, EpochCounterWithStopper
from .experiment import create_experiment_directory
from .hooks import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from .run_options import RunOptions, parse_arguments

__all__ = [
    "AudioMetricStats", "Brain", "Checkpoint", "Checkpointer", "EpochCounter", "EpochCounterWithStopper", "RunOptions",
    "Stage", "average_checkpoints", "ckpt_recency", "create_experiment_directory", "mark_as_loader",
    "mark_as_saver", "parse_arguments", "register_checkpoint_hooks",
]
