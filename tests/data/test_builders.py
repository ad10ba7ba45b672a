from pathlib import Path

import pytest
from omegaconf import OmegaConf

import baton
from baton.data import synth
from baton.data.builders import audio_dataset, resolve_manifest
from baton.errors import ConfigError

SYNTH_YAML = Path(baton.__file__).parent / "conf" / "dset" / "synth.yaml"


def test_dset_synth_config_builds_train_and_evaluation_sets(synth_cache: Path, monkeypatch):
    monkeypatch.setenv("BATON_DATA_DIR", str(synth_cache))
    cfg = OmegaConf.load(SYNTH_YAML)

    train = audio_dataset(cfg, "train", seed=1)
    valid = audio_dataset(cfg, "valid", seed=1, classes=train.classes)
    samples = audio_dataset(cfg, "generate", seed=1, classes=train.classes)

    assert len(train) == synth.SPLITS["train"] and len(valid) == synth.SPLITS["valid"]
    assert train.random_crop and not valid.random_crop
    assert train[0].wav.shape == (1, 16_000)
    assert samples[0].info.path.startswith(str(synth_cache))


def test_split_overrides_and_errors_name_the_key(tone_manifest):
    cfg = OmegaConf.load(SYNTH_YAML)
    cfg.train = {"manifest": str(tone_manifest(count=4)), "segment_duration": None}

    assert audio_dataset(cfg, "train", seed=0).segment_duration is None
    cfg.train.segment_lenght = 2.0
    with pytest.raises(ConfigError, match="dataset.train.segment_lenght"):
        audio_dataset(cfg, "train", seed=0)
    with pytest.raises(ConfigError, match="dataset.missing.manifest"):
        audio_dataset(cfg, "missing", seed=0)
    with pytest.raises(ConfigError, match="synth:dev"):
        resolve_manifest("synth:dev")


def test_split_loaders_number_every_split_s_labels_in_the_training_order(tmp_path: Path) -> None:
    """A valid split that lacks a class keeps the training ids of the classes it has."""
    from baton.data.builders import split_loaders
    from tests.data.audio_files import manifest_line, write_manifest_lines, write_tone

    def manifest(name: str, labels: list[str]) -> str:
        lines = [manifest_line(write_tone(tmp_path / f"{name}{i}.wav", 0.5, freq=200.0 * (i + 1)), 0.5, label=label)
                 for i, label in enumerate(labels)]
        return str(write_manifest_lines(tmp_path / f"{name}.jsonl", lines))

    base = OmegaConf.load(Path(baton.__file__).parent / "conf" / "dset" / "synth.yaml")
    cfg = OmegaConf.merge(base, {"batch_size": 2, "num_workers": 0, "shuffle": False, "drop_last": False,
                                 "train": {"manifest": manifest("train", ["a", "b", "c"])},
                                 "valid": {"manifest": manifest("valid", ["c"])}})
    loaders = split_loaders(cfg, ["valid", "train"], seed=0, batch_size=2)
    (batch,) = list(loaders["valid"])
    assert loaders["valid"].dataset.classes == ["a", "b", "c"] and batch.labels.tolist() == [2]
