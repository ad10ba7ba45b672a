"""baton: training pipelines for audio and speech research on PyTorch.

Kept import-light on purpose: `import baton` must cost little beyond `import torch`, so heavy
optional modules (hydra, rich, tensorboard, soundfile) are imported where they are used.
"""

__version__ = "0.1.0"
