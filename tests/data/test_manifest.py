import argparse
import json
from pathlib import Path

import pytest

from baton.data import cli
from baton.data.manifest import read_manifest, scan_folder, write_manifest
from baton.errors import DataError, UserError
from tests.data.audio_files import manifest_line, write_corrupt, write_manifest_lines, write_tone
from tests.helpers import mode, umask


def test_scan_labels_files_from_their_folder_and_reports_unreadable_ones(tmp_path: Path):
    write_tone(tmp_path / "dog" / "a.wav", 1.0)
    write_tone(tmp_path / "dog" / "b.flac", 0.5, sample_rate=8000, channels=2)
    write_tone(tmp_path / "cat" / "deep" / "c.WAV", 0.25)
    bad = write_corrupt(tmp_path / "cat" / "broken.wav")
    (tmp_path / "notes.txt").write_text("not audio, not scanned")

    report = scan_folder(tmp_path, label_from_parent=True, jobs=3, progress=False)

    assert [(Path(e.path).name, e.label) for e in report.entries] == [
        ("c.WAV", "deep"), ("a.wav", "dog"), ("b.flac", "dog")]
    flac = report.entries[2]
    assert (flac.duration, flac.sample_rate, flac.channels) == (0.5, 8000, 2)
    assert [path for path, _ in report.failures] == [str(bad)]


def test_manifest_round_trip_keeps_extra_fields_and_relative_paths(tmp_path: Path):
    write_tone(tmp_path / "data" / "a.wav", 1.0)
    entries = scan_folder(tmp_path / "data", progress=False).entries
    entries[0].extra["speaker"] = "spk1"
    write_manifest(tmp_path / "data" / "m.jsonl", entries)

    line = json.loads((tmp_path / "data" / "m.jsonl").read_text())
    assert line["path"] == "a.wav"  # relative to the manifest's folder: the folder can move
    (tmp_path / "data").rename(tmp_path / "moved")
    [entry] = read_manifest(tmp_path / "moved" / "m.jsonl")
    assert entry.path == str((tmp_path / "moved" / "a.wav").resolve())
    assert entry.extra == {"speaker": "spk1"} and entry.duration == 1.0


def test_missing_file_is_reported_with_manifest_line_number(tmp_path: Path):
    good = write_tone(tmp_path / "a.wav", 1.0)
    manifest = write_manifest_lines(tmp_path / "m.jsonl", [
        manifest_line(good, 1.0), "", manifest_line(tmp_path / "gone.wav", 1.0)])

    with pytest.raises(DataError, match=r"m\.jsonl:3: audio file not found: .*gone\.wav"):
        read_manifest(manifest)
    assert len(read_manifest(manifest, on_missing="skip")) == 1


@pytest.mark.parametrize("bad_line, message", [
    ('{"path": "a.wav", "duration": 1.0,', r"m\.jsonl:2: invalid JSON"),
    ('{"path": "a.wav", "duration": 1.0}', r"m\.jsonl:2: missing key\(s\) sample_rate, channels"),
    ('{"path": "a.wav", "duration": "long", "sample_rate": 1, "channels": 1}', r"m\.jsonl:2: .*must be numbers"),
])
def test_bad_manifest_line_is_reported_with_its_number(tmp_path: Path, bad_line: str, message: str):
    good = write_tone(tmp_path / "a.wav", 1.0)
    manifest = write_manifest_lines(tmp_path / "m.jsonl", [manifest_line(good, 1.0), bad_line])
    with pytest.raises(DataError, match=message):
        read_manifest(manifest)


def test_cli_manifest_skips_unreadable_files_and_lists_them(tmp_path: Path, capsys):
    write_tone(tmp_path / "audio" / "up" / "1.wav", 0.5)
    write_tone(tmp_path / "audio" / "down" / "2.ogg", 0.75, subtype="VORBIS")
    write_corrupt(tmp_path / "audio" / "down" / "3.wav")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_intermixed_args(["manifest", "--label-from-parent", str(tmp_path / "audio"),
                                         "-o", str(tmp_path / "out.jsonl"), "--jobs", "2"])

    assert cli.main(args) == 0

    err = capsys.readouterr().err
    assert "1 unreadable file(s) skipped" in err and "3.wav" in err
    entries = read_manifest(tmp_path / "out.jsonl")
    assert [(Path(e.path).name, e.label) for e in entries] == [("2.ogg", "down"), ("1.wav", "up")]
    assert entries[0].duration == pytest.approx(0.75)


def test_cli_manifest_without_output_says_how_to_call_it(tmp_path: Path):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    with pytest.raises(UserError, match="needs a folder and -o FILE.jsonl"):
        cli.main(parser.parse_intermixed_args(["manifest", str(tmp_path)]))


@pytest.mark.parametrize(("mask", "file_mode", "folder_mode"), [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_a_written_manifest_follows_the_umask(tmp_path: Path, mask: int, file_mode: int, folder_mode: int):
    wav = write_tone(tmp_path / "a.wav", 0.5)
    manifest = tmp_path / "new" / "train.jsonl"
    with umask(mask):
        write_manifest(manifest, scan_folder(tmp_path, progress=False).entries)
    assert mode(manifest) == file_mode and mode(manifest.parent) == folder_mode
    assert [e.path for e in read_manifest(manifest)] == [str(wav)]
