import logging
from pathlib import Path

import pytest
import torch

from baton.data import AudioDataset, build_loader, collate_audio
from baton.errors import DataError
from tests.data.audio_files import manifest_line, write_corrupt, write_manifest_lines, write_tone


def test_random_segments_depend_only_on_seed_epoch_and_index(tone_manifest):
    manifest = tone_manifest(count=4, durations=(2.0,))
    dataset = AudioDataset(manifest, sample_rate=16_000, segment_duration=0.5, return_info=True, seed=7)

    offsets = [dataset[i].info.offset for i in range(4)]
    again = AudioDataset(manifest, sample_rate=16_000, segment_duration=0.5, return_info=True, seed=7)
    assert [again[i].info.offset for i in range(4)] == offsets
    dataset.set_epoch(1)
    assert [dataset[i].info.offset for i in range(4)] != offsets
    assert all(0.0 <= o <= 1.5 for o in offsets)
    assert dataset[0].wav.shape == (1, 8000) and dataset[0].length == 8000


def test_fixed_segments_start_at_zero_and_short_files_are_padded(tone_manifest):
    manifest = tone_manifest(count=2, durations=(0.5, 2.0))
    dataset = AudioDataset(manifest, sample_rate=16_000, segment_duration=1.0, random_crop=False, return_info=True)

    short, long = dataset[0], dataset[1]
    assert short.wav.shape == long.wav.shape == (1, 16_000)
    assert short.length == 8000 and short.wav[0, 8000:].abs().sum() == 0
    assert long.length == 16_000 and long.info.offset == 0.0
    unpadded = AudioDataset(manifest, sample_rate=16_000, segment_duration=1.0, random_crop=False, pad=False)
    assert unpadded[0].wav.shape == (1, 8000)


def test_whole_files_are_resampled_and_mixed_to_the_target_format(tmp_path: Path):
    stereo = write_tone(tmp_path / "stereo.wav", 1.0, sample_rate=8000, channels=2, freq=300)
    manifest = write_manifest_lines(tmp_path / "m.jsonl", [manifest_line(stereo, 1.0, 8000, 2)])

    mono = AudioDataset(manifest, sample_rate=16_000, channels=1)[0]
    assert mono.wav.shape == (1, 16_000) and mono.length == 16_000
    # Mixdown of channels at levels 1.0 and 0.7 of a 0.5 sine: peak 0.425.
    assert mono.wav.abs().max().item() == pytest.approx(0.425, abs=0.01)
    assert AudioDataset(manifest, sample_rate=8000, channels=2)[0].wav.shape == (2, 8000)


def test_segment_info_locates_the_audio_in_its_file(tone_manifest):
    manifest = tone_manifest(count=2, durations=(1.5,))
    dataset = AudioDataset(manifest, sample_rate=16_000, segment_duration=0.5, return_info=True)

    item = dataset[1]
    assert item.info.path.endswith("001.wav") and item.info.label == "class1"
    assert item.info.total_frames == 24_000 and item.info.frames == 8000
    full = AudioDataset(manifest, sample_rate=16_000)[1].wav
    start = round(item.info.offset * 16_000)
    assert torch.equal(item.wav, full[:, start : start + 8000])


def test_duration_filters_and_label_ids(tone_manifest):
    manifest = tone_manifest(count=8, durations=(0.5, 1.0, 1.5, 2.0))
    dataset = AudioDataset(manifest, sample_rate=16_000, min_duration=0.75, max_duration=1.75)

    assert len(dataset) == 4
    assert sorted({e.duration for e in dataset.entries}) == [1.0, 1.5]
    assert dataset.classes == ["class0", "class1"] and dataset[0].label == 1
    with pytest.raises(DataError, match="not one of the classes"):
        AudioDataset(manifest, sample_rate=16_000, classes=["class0"])


def _manifest_with_bad_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    corrupt = write_corrupt(tmp_path / "corrupt.wav")
    empty = write_tone(tmp_path / "empty.wav", 0.0)
    lines = [manifest_line(write_tone(tmp_path / f"ok{i}.wav", 1.0), 1.0) for i in range(4)]
    lines.insert(1, manifest_line(corrupt, 1.0))
    lines.insert(3, manifest_line(empty, 1.0))
    return write_manifest_lines(tmp_path / "m.jsonl", lines), corrupt, empty


def test_on_error_skip_goes_on_and_logs_both_bad_paths(tmp_path: Path, caplog):
    manifest, corrupt, empty = _manifest_with_bad_files(tmp_path)
    dataset = AudioDataset(manifest, sample_rate=16_000, segment_duration=0.5, return_info=True, on_error="skip")
    loader = build_loader(dataset, batch_size=2, shuffle=True, seed=3)

    with caplog.at_level(logging.WARNING, logger="baton.data.dataset"):
        batches = list(loader)

    assert sum(len(b) for b in batches) == 6  # every index served, by a readable file
    served = {Path(info.path).name for b in batches for info in b.infos}
    assert served <= {"ok0.wav", "ok1.wav", "ok2.wav", "ok3.wav"}
    assert str(corrupt) in caplog.text and str(empty) in caplog.text
    assert dataset.num_skipped == 2
    # The replacement for a bad index is fixed: the next readable file in manifest order.
    assert Path(dataset[1].info.path).name == "ok1.wav"


@pytest.mark.parametrize("bad_index, name", [(1, "corrupt.wav"), (3, "empty.wav")])
def test_on_error_raise_names_the_bad_file(tmp_path: Path, bad_index: int, name: str):
    manifest, _, _ = _manifest_with_bad_files(tmp_path)
    dataset = AudioDataset(manifest, sample_rate=16_000, on_error="raise")
    dataset[0]
    with pytest.raises(DataError, match=name):
        dataset[bad_index]


def test_collate_pads_to_the_longest_and_keeps_lengths(tone_manifest):
    dataset = AudioDataset(tone_manifest(count=3, durations=(0.5, 1.0, 0.25)), sample_rate=16_000)

    batch = collate_audio([dataset[0], dataset[1], dataset[2]])

    assert batch.wav.shape == (3, 1, 16_000)
    assert batch.lengths.tolist() == [8000, 16_000, 4000]
    assert batch.labels.tolist() == [0, 1, 0]
    assert batch.mask().sum(1).tolist() == [8000, 16_000, 4000]
    assert batch.wav[2, 0, 4000:].abs().sum() == 0
    assert set(batch.as_dict()) == {"wav", "lengths", "labels"}
