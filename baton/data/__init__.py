"""Audio data: manifests, datasets, collate, resumable samplers, and the built-in dataset.

Names are imported on first use so that `baton.data.sampler` or `baton.data.rng` (needed by
the engine) do not pull in soundfile and julius.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AudioDataset": "dataset",
    "AudioItem": "dataset",
    "SegmentInfo": "dataset",
    "AudioBatch": "collate",
    "collate_audio": "collate",
    "AudioMeta": "manifest",
    "read_manifest": "manifest",
    "write_manifest": "manifest",
    "scan_folder": "manifest",
    "scan_pairs": "pairs",
    "BucketBatchSampler": "bucketing",
    "ResumableSampler": "sampler",
    "build_loader": "loader",
    "BatchStream": "stream",
    "audio_dataset": "builders",
    "resolve_manifest": "builders",
    "read_audio": "audio",
    "write_wav": "audio",
    "audio_info": "audio",
    "safe_filename": "names",
    "set_epoch": "epochs",
    "walk_datasets": "epochs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'baton.data' has no attribute '{name}'")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
