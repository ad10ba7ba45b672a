"""The stages of an epoch."""

from __future__ import annotations

from enum import Enum


class Stage(str, Enum):
    TRAIN = "train"
    VALID = "valid"
    EVALUATE = "evaluate"
    GENERATE = "generate"
    TEST = "evaluate"  # SpeechBrain's name for the evaluate stage (an alias, same member)
