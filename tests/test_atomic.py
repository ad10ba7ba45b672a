"""One atomic write for every file baton keeps: the old file or the complete new one, never half."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

import pytest

from baton import atomic
from baton.atomic import (
    atomic_write,
    remove_stale_temporaries,
    stale_temporaries,
    write_bytes_atomic,
    write_text_atomic,
)
from tests.helpers import mode, umask


def test_a_new_file_appears_complete_and_no_temporary_is_left(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"

    def writer(handle: BinaryIO) -> None:
        for _ in range(100):
            handle.write(b"x" * 1000)

    atomic_write(target, writer)
    assert target.read_bytes() == b"x" * 100_000
    assert os.listdir(tmp_path) == ["out.bin"]


def test_an_exception_in_the_writer_leaves_the_old_content_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "history.jsonl"
    write_text_atomic(target, "old\n")

    def failing(handle: BinaryIO) -> None:
        handle.write(b"half of the new con")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, failing)
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["history.jsonl"]


def test_a_failed_rename_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    (target / "inside").mkdir(parents=True)  # a non-empty folder cannot be replaced by a file
    with pytest.raises(OSError):
        write_bytes_atomic(target, b"data")
    assert sorted(os.listdir(tmp_path)) == ["taken"]


def test_data_and_folder_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", spy)
    write_bytes_atomic(tmp_path / "a.bin", b"abc")
    assert synced == ["file", "folder"]  # the data before the rename, the rename after it


def test_a_folder_that_refuses_fsync_still_gets_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def no_folder_fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument")  # some network file systems
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", no_folder_fsync)
    write_text_atomic(tmp_path / "config.yaml", "a: 1\n")
    assert (tmp_path / "config.yaml").read_text() == "a: 1\n"


def test_copies_are_separate_complete_files(tmp_path: Path) -> None:
    target, copy = tmp_path / "checkpoint.th", tmp_path / "checkpoint_3.th"
    calls = []

    def writer(handle: BinaryIO) -> None:
        calls.append(1)
        handle.write(b"state of epoch 3")

    atomic_write(target, writer, copies=[copy])
    assert calls == [1]  # serialized once
    assert copy.read_bytes() == target.read_bytes() == b"state of epoch 3"
    assert os.stat(copy).st_ino != os.stat(target).st_ino and os.stat(copy).st_nlink == 1
    with open(target, "r+b") as handle:  # an in-place change of the target...
        handle.write(b"XXXXX")
    assert copy.read_bytes() == b"state of epoch 3"  # ...is not a change of the copy
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.th", "checkpoint_3.th"]


def test_text_is_utf8_whatever_the_locale(tmp_path: Path) -> None:
    write_text_atomic(tmp_path / "t.txt", "Dvořák – 40 dB\n")
    assert (tmp_path / "t.txt").read_bytes() == "Dvořák – 40 dB\n".encode()


def test_stale_temporaries_are_found_by_target_name_and_removed(tmp_path: Path) -> None:
    temporary = atomic.temporary_name(tmp_path / "checkpoint.th")
    assert temporary.name.startswith(".checkpoint.th.") and temporary.name.endswith(".tmp")
    assert f".{os.getpid()}." in temporary.name
    assert atomic.temporary_name(tmp_path / "checkpoint.th") != temporary  # unique per call
    temporary.write_bytes(b"half a checkpoint")  # as left by a process killed mid-write
    other = atomic.temporary_name(tmp_path / "history.jsonl")
    other.write_bytes(b"{")
    (tmp_path / "checkpoint.th").write_bytes(b"complete")
    assert stale_temporaries(tmp_path, "checkpoint*") == [temporary]
    remove_stale_temporaries(tmp_path, "checkpoint*")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["checkpoint.th", other.name])
    remove_stale_temporaries(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.th"]
    assert stale_temporaries(tmp_path / "missing") == []


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_files_follow_the_umask_not_a_private_mode(tmp_path: Path, mask: int, expected: int) -> None:
    target, copy = tmp_path / "history.jsonl", tmp_path / "copy.jsonl"
    with umask(mask):
        atomic_write(target, lambda handle: handle.write(b"{}\n"), copies=[copy])
        assert mode(target) == mode(copy) == expected
        write_text_atomic(target, "replaced\n")  # a replacement too: it is a new file
    assert mode(target) == expected
