import argparse
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import soundfile as sf

from baton.data import AudioDataset, cli, read_manifest, synth
from tests.helpers import mode, umask


@pytest.fixture
def synth_root(synth_cache: Path) -> Path:
    return synth_cache / "synth"


def test_dataset_is_real_16bit_wav_with_balanced_labels(synth_root: Path):
    folder = synth.ensure_synth(synth_root, seed=0)

    for split, count in synth.SPLITS.items():
        entries = read_manifest(folder / f"{split}.jsonl")
        assert len(entries) == count
        assert Counter(e.label for e in entries) == {c: count // len(synth.CLASSES) for c in synth.CLASSES}
        assert all(synth.MIN_DURATION <= e.duration <= synth.MAX_DURATION for e in entries)
    info = sf.info(entries[0].path)
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", 16_000, 1)
    dataset = AudioDataset(folder / "valid.jsonl", sample_rate=16_000, segment_duration=1.0)
    assert dataset.classes == sorted(synth.CLASSES)
    peak = max(dataset[i].wav.abs().max().item() for i in range(len(dataset)))
    assert 0.1 < peak < 1.0  # audible and never clipped


def test_same_seed_gives_identical_files_and_another_seed_does_not(synth_root: Path, tmp_path: Path, capsys):
    first = synth.ensure_synth(synth_root, seed=0)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.main(parser.parse_intermixed_args(["synth", "--root", str(tmp_path), "--seed", "0"])) == 0  # `baton data synth`
    second = synth.dataset_folder(tmp_path, seed=0)
    assert f"synthetic dataset written: {second}" in capsys.readouterr().out
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())

    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    other, _, _ = synth.make_example(seed=1, split_id=0, index=0)
    assert other.tolist() != synth.make_example(seed=0, split_id=0, index=0)[0].tolist()


def test_existing_dataset_is_reused(synth_root: Path):
    folder = synth.ensure_synth(synth_root, seed=0)
    stamp = (folder / "train.jsonl").stat().st_mtime_ns
    assert synth.ensure_synth(synth_root, seed=0) == folder
    assert (folder / "train.jsonl").stat().st_mtime_ns == stamp


def test_cache_location_follows_the_environment(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("BATON_DATA_DIR", raising=False)
    monkeypatch.delenv("BATON_XP_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert synth.data_dir() == tmp_path / "data_cache"
    monkeypatch.setenv("BATON_DATA_DIR", str(tmp_path / "mine"))
    assert synth.data_dir() == tmp_path / "mine"
    monkeypatch.setenv("BATON_DATA_DIR", "relative")
    assert synth.data_dir() == tmp_path / "relative"


def test_cache_does_not_follow_the_xp_root_into_tmp(monkeypatch, tmp_path: Path):
    """XPs on scratch space (/tmp is wiped, and shared between users) keep the cache where
    the user works: `./data_cache`, or BATON_DATA_DIR."""
    monkeypatch.delenv("BATON_DATA_DIR", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("BATON_XP_DIR", "/tmp/baton_xps")
    assert synth.data_dir() == work / "data_cache"
    monkeypatch.setenv("BATON_XP_DIR", str(tmp_path / "scratch" / "xps"))
    assert synth.data_dir() == work / "data_cache"


def test_dataset_files_and_folders_follow_the_umask(tmp_path: Path):
    with umask(0o022):
        folder = synth.ensure_synth(tmp_path / "cache" / "synth", seed=0)
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary left
    folders = [tmp_path / "cache", folder.parent, folder, *(p for p in folder.rglob("*") if p.is_dir())]
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert len(files) == sum(synth.SPLITS.values()) + len(synth.SPLITS)
    assert {mode(p) for p in folders} == {0o755}
    assert {mode(p) for p in files} == {0o644}


@pytest.mark.slow
def test_processes_racing_to_create_the_dataset_share_one_copy(tmp_path: Path):
    with ProcessPoolExecutor(max_workers=2) as pool:
        folders = list(pool.map(synth.ensure_synth, [tmp_path] * 2, [4] * 2))

    assert folders[0] == folders[1]
    assert [p.name for p in tmp_path.iterdir()] == [folders[0].name]  # no temp folder left behind
    assert len(read_manifest(folders[0] / "train.jsonl")) == synth.SPLITS["train"]

