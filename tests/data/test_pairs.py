"""Paired files (noisy/clean, mixture/sources): one manifest item per relative path found in
every folder, its streams cropped at the same offset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from baton.data import cli
from baton.data.collate import collate_audio
from baton.data.dataset import AudioDataset
from baton.data.manifest import read_manifest
from baton.errors import DataError, UserError
from tests.data.audio_files import manifest_line, write_manifest_lines, write_tone


def write_pair(root: Path, name: str, seconds: float, seed: int) -> None:
    """noisy/<name> is random audio, clean/<name> exactly half of it: aligned crops keep that."""
    noisy = np.random.default_rng(seed).uniform(-0.5, 0.5, int(seconds * 16000))
    for folder, audio in (("noisy", noisy), ("clean", noisy / 2)):
        (root / folder / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(root / folder / name), audio, 16000, subtype="FLOAT")


def manifest(args: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.main(parser.parse_intermixed_args(["manifest", *args]))


def test_folders_pair_by_relative_path_and_mismatches_are_listed(tmp_path: Path, capsys) -> None:
    write_pair(tmp_path, "p232_001.wav", 1.0, seed=1)
    write_pair(tmp_path, "spk2/p257_004.wav", 0.5, seed=2)
    write_tone(tmp_path / "noisy" / "only_noisy.wav", 0.5)
    write_tone(tmp_path / "noisy" / "short.wav", 0.5)
    write_tone(tmp_path / "clean" / "short.wav", 0.4)  # another length: misaligned, skipped
    out = tmp_path / "train.jsonl"
    assert manifest(["--pair", f"noisy={tmp_path / 'noisy'}", "--pair", f"clean={tmp_path / 'clean'}", "-o", str(out)]) == 0

    err = capsys.readouterr().err
    assert "2 unpaired, mismatched or unreadable file(s) skipped" in err
    assert "only_noisy.wav: no only_noisy.wav under" in err and "6400 frames where" in err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["audio"] for line in lines] == [
        {"noisy": "noisy/p232_001.wav", "clean": "clean/p232_001.wav"},
        {"noisy": "noisy/spk2/p257_004.wav", "clean": "clean/spk2/p257_004.wav"},
    ]  # relative to the manifest's folder, so the dataset moves as one piece
    (first, second) = read_manifest(out)
    assert first.path == str(tmp_path / "noisy" / "p232_001.wav") and first.duration == pytest.approx(1.0)
    assert second.audio["clean"] == str(tmp_path / "clean" / "spk2" / "p257_004.wav")


def test_every_stream_of_an_item_is_cropped_at_the_same_offset(tmp_path: Path) -> None:
    for i in range(4):
        write_pair(tmp_path, f"{i}.wav", 1.0 + 0.3 * i, seed=i)
    out = tmp_path / "train.jsonl"
    manifest(["--pair", f"noisy={tmp_path / 'noisy'}", "--pair", f"clean={tmp_path / 'clean'}", "-o", str(out)])
    dataset = AudioDataset(out, sample_rate=16000, segment_duration=0.25, random_crop=True, seed=3)
    offsets = set()
    for epoch in range(3):
        dataset.set_epoch(epoch)
        batch = collate_audio([dataset[i] for i in range(len(dataset))])
        assert batch.streams is not None and list(batch.streams) == ["noisy", "clean"]
        assert batch.streams["noisy"].shape == (4, 1, 4000)
        torch.testing.assert_close(batch.streams["clean"] * 2, batch.streams["noisy"], rtol=0, atol=1e-6)
        assert torch.equal(batch.wav, batch.streams["noisy"])
        offsets.update(float(batch.streams["noisy"][i, 0, 0]) for i in range(4))
        fields = batch.as_dict()
        assert fields["noisy"] is batch.streams["noisy"] and fields["clean"] is batch.streams["clean"]
    assert len(offsets) == 12  # random crops: other offsets every epoch, the same for both streams


def test_bad_streams_in_a_manifest_are_one_line(tmp_path: Path) -> None:
    audio = write_tone(tmp_path / "a.wav", 1.0)
    for streams, message in [({"wav": str(audio), "clean": str(audio)}, "stream name 'wav' is taken by a batch field"),
                             ("a.wav", "'audio' must map stream names to file paths"),
                             ({"noisy": str(audio), "clean": "missing.wav"}, "audio file not found: .*missing.wav")]:
        bad = write_manifest_lines(tmp_path / "m.jsonl", [manifest_line(audio, 1.0, audio=streams)])
        with pytest.raises(DataError, match=message) as error:
            read_manifest(bad)
        assert "\n" not in str(error.value) and "m.jsonl:1" in str(error.value)


def test_pair_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="give NAME=DIR"):
        manifest(["--pair", "clean", "--pair", "noisy=x", "-o", str(tmp_path / "m.jsonl")])
    with pytest.raises(UserError, match="takes no folder"):
        manifest([str(tmp_path), "--pair", "a=x", "--pair", "b=y", "-o", str(tmp_path / "m.jsonl")])
    with pytest.raises(DataError, match="pairing needs two streams"):
        manifest(["--pair", f"clean={tmp_path}", "-o", str(tmp_path / "m.jsonl")])
