"""The stages of an epoch."""

from __future__ import annotations

from enum import Enum


class Stage(str, Enum):
    TRAIN = "train"
    VALID = "valid"
    EVALUATE = "evaluate"
    GENERATE = "generate"
    TEST = "evaluate"  # SpeechBrain's name for the evaluate stage (an alias, same member)

    @classmethod
    def of(cls, stage: Stage | str) -> Stage:
        """A Stage from itself or its name ('train', 'valid', 'evaluate', 'test', 'generate'),
        so code written for AudioCraft (`common_train_valid('train')`) or SpeechBrain works.

        Raises:
            ValueError: not a stage name.
        """
        if isinstance(stage, cls):
            return stage
        name = str(stage).lower()
        if name.upper() in cls.__members__:
            return cls.__members__[name.upper()]
        raise ValueError(f"unknown stage {stage!r}; use one of train, valid, evaluate (test), generate")
