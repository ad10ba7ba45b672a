"""Datasets from the `dataset` config section (see conf/dset/synth.yaml for the keys).

A split section (`dataset.train`, `dataset.valid`, ...) names its manifest and may override
any dataset-wide key, e.g. `random_crop: false` for validation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from .dataset import AudioDataset

SYNTH_PREFIX = "synth:"
_DATASET_KEYS = ("sample_rate", "channels", "segment_duration", "random_crop", "min_duration",
                 "max_duration", "on_error", "return_info", "streams")
# Keys of a split section that belong to the solver, not to the dataset.
_SOLVER_KEYS = ("manifest", "num_samples")


def resolve_manifest(spec: str, synth_seed: int = 0) -> Path:
    """A manifest path; `synth:<split>` is the built-in dataset, generated when missing."""
    if spec.startswith(SYNTH_PREFIX):
        from . import synth

        split = spec[len(SYNTH_PREFIX):]
        if split not in synth.SPLITS:
            raise ConfigError(f"unknown built-in split '{spec}'; use one of {', '.join(SYNTH_PREFIX + s for s in synth.SPLITS)}")
        return synth.manifest_path(split, seed=synth_seed)
    return Path(spec).expanduser()


def check_manifests(cfg: Mapping[str, Any]) -> None:
    """Every split's manifest file exists (the built-in `synth:` ones are made on first use):
    checked before an XP's folder is made, and by `baton run --dry_run`.

    Raises:
        DataError: one line naming the key, the path and how to make it.
    """
    for split, section in cfg.items():
        if not isinstance(section, Mapping) or section.get("manifest") is None:
            continue
        spec = str(section["manifest"])
        if spec.startswith(SYNTH_PREFIX):
            continue
        path = Path(spec).expanduser()
        if not path.is_file():
            raise DataError(f"dataset.{split}.manifest: {path} does not exist; create it with "
                            f"`baton data manifest DIR -o {path}`, or fix the path")


def audio_dataset(
    cfg: Mapping[str, Any], split: str, *, seed: int, classes: Sequence[str] | None = None
) -> AudioDataset:
    """The `AudioDataset` of `split` as configured in `cfg` (the `dataset` config section).

    Args:
        seed: the XP seed, which fixes every random segment offset.
        classes: the training set's label order, for the other splits.

    Raises:
        ConfigError: the split or one of its keys is unknown.
    """
    if split not in cfg or not isinstance(cfg[split], Mapping) or "manifest" not in cfg[split]:
        raise ConfigError(f"dataset.{split}.manifest is not set; add it to the dset config (e.g. synth:train)")
    section = cfg[split]
    unknown = sorted(set(section) - set(_DATASET_KEYS) - set(_SOLVER_KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) dataset.{split}.{unknown[0]}; a split takes manifest and {', '.join(_DATASET_KEYS)}")
    # `streams` may be absent from a dset config written before it existed: no streams then.
    options: dict[str, Any] = {key: section[key] if key in section else cfg[key] if key != "streams" else cfg.get(key)
                               for key in _DATASET_KEYS}
    if options["streams"] is not None:
        options["streams"] = list(options["streams"])
    manifest = resolve_manifest(str(section["manifest"]), int(cfg["synth_seed"]))
    return AudioDataset(manifest, seed=seed, classes=classes, **options)


def split_loaders(
    cfg: Mapping[str, Any], splits: Sequence[str], *, seed: int, batch_size: int
) -> dict[str, Any]:
    """One loader per split of the `dataset` config section; only `train` is shuffled (when
    `dataset.shuffle`), drops its short last batch (when `dataset.drop_last`) and pads its
    shards to equal length across ranks; the other splits give each item to one rank and number
    their labels in the training split's order.

    Args:
        batch_size: per rank (the caller divides the global one by the world size).
    """
    from .loader import build_loader

    loaders: dict[str, Any] = {}
    classes = None
    # The training split first: its label order numbers every split's labels (a split that
    # lacks a class must not shift the ids of the others).
    for split in sorted(splits, key=lambda s: s != "train"):
        train = split == "train"
        dataset = audio_dataset(cfg, split, seed=seed, classes=classes)
        if train and dataset.classes:
            classes = dataset.classes
        loaders[split] = build_loader(
            dataset,
            batch_size=batch_size,
            shuffle=train and bool(cfg["shuffle"]),
            seed=seed,
            num_workers=int(cfg["num_workers"]),
            drop_last=train and bool(cfg["drop_last"]),
            pad=train,
        )
    return loaders
