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
    from .xp.api import run as run
    from .xp.load import load_model as load_model

# name -> module that defines it, imported on first access.
_LAZY = {"load_model": "baton.xp.load", "run": "baton.xp.api"}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'baton' has no attribute '{name}'")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
