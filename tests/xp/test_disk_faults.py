"""Disk and permission faults are one line, and never cost the previous checkpoint.

The file systems are real: small tmpfs mounts (root only; skipped where mounting is refused)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from baton.checkpoint import read_checkpoint
from tests.xp.conftest import REPO

# A model of about 2.6 MB per checkpoint file: epoch 1 (checkpoint.th and its kept copy) fits in
# 8 MB, epoch 2 (two more while the old ones stay) does not.
ARGS = ["solver=example", "task.hidden=4096", "task.num_train=128", "task.num_valid=32",
        "optim.epochs=2", "optim.ema.use=false", "logging.tensorboard=false", "num_threads=1"]


def mount_tmpfs(path: Path, size: str, *options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): needs root")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "8m")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def baton(*args: str, xp_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "BATON_XP_DIR": str(xp_dir)}
    return subprocess.run([sys.executable, "-m", "baton", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_a_full_disk_at_a_save_is_one_line_and_the_run_resumes_bit_exact(small_disk: Path, tmp_path: Path) -> None:
    full = baton("run", *ARGS, xp_dir=small_disk)
    assert full.returncode == 2, full.stdout[-2000:] + full.stderr[-2000:]
    (line,) = full.stderr.strip().splitlines()
    assert line.startswith("error: cannot write checkpoint ") and f"No space left on device ({small_disk})" in line
    (folder,) = small_disk.glob("xps/*")
    assert read_checkpoint(folder / "checkpoint.th")["epoch"] == 1  # the previous one is intact
    assert not list(folder.glob(".*.tmp"))
    status = baton("ls", xp_dir=small_disk).stdout
    assert "failed" in status and "enforce fail" not in status

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    resumed = baton("run", *ARGS, xp_dir=small_disk)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = baton("run", *ARGS, xp_dir=tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-2000:]
    (reference,) = (tmp_path / "straight").glob("xps/*/checkpoint.th")
    ours = torch.load(folder / "checkpoint.th", weights_only=True)["state"]["registered"]["model"]
    theirs = torch.load(reference, weights_only=True)["state"]["registered"]["model"]
    assert all(torch.equal(ours[key], value) for key, value in theirs.items())


def test_a_full_disk_at_start_up_is_one_line(small_disk: Path) -> None:
    subprocess.run(["dd", "if=/dev/zero", f"of={small_disk / 'filler'}", "bs=64k"], capture_output=True, check=False)
    done = baton("run", *ARGS, xp_dir=small_disk)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "No space left on device" in line and str(small_disk) in line


def test_unwritable_places_are_one_line(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root")
    readonly = tmp_path / "readonly"
    mount_tmpfs(readonly, "1m", "ro")
    try:
        done = baton("run", *ARGS, xp_dir=readonly)
        assert done.returncode == 2
        (line,) = done.stderr.strip().splitlines()
        assert "Read-only file system" in line and str(readonly) in line

        a_file = tmp_path / "not_a_folder"
        a_file.write_text("")
        done = baton("run", *ARGS, xp_dir=a_file)
        assert done.returncode == 2
        (line,) = done.stderr.strip().splitlines()
        assert str(a_file) in line and "Not a directory" in line

        trained = baton("run", *ARGS, "optim.epochs=1", "task.hidden=8", xp_dir=tmp_path / "xps")
        assert trained.returncode == 0, trained.stderr[-2000:]
        (folder,) = (tmp_path / "xps").glob("xps/*")
        done = baton("export", folder.name, "--source", "last", "-o", str(readonly / "model.pt"),
                     xp_dir=tmp_path / "xps")
        assert done.returncode == 2
        (line,) = done.stderr.strip().splitlines()
        assert "Read-only file system" in line and "model.pt" in line
    finally:
        subprocess.run(["umount", "-l", str(readonly)], check=False)


def test_a_disk_filled_during_a_run_names_the_write_that_failed_and_records_a_failure(tmp_path: Path) -> None:
    """Another program fills the disk after the first checkpoint: the one line names the write
    that failed first (not the exit record after it), the XP is `failed` (the room set aside for
    its exit record is given up for it), no empty temporary or thread traceback is left, and
    once there is room again the rerun finishes."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "30m")
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO), "BATON_XP_DIR": str(disk)}
        args = [*ARGS, "optim.epochs=3", "task.num_train=4000", "logging.tensorboard=true"]  # its thread too
        proc = subprocess.Popen([sys.executable, "-m", "baton", "run", *args], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        while not list(disk.glob("xps/*/checkpoint.th")):
            assert proc.poll() is None, proc.communicate()
        subprocess.run(["dd", "if=/dev/zero", f"of={disk / 'filler'}", "bs=64k"], capture_output=True, check=False)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, err[-2000:]
        (line,) = err.strip().splitlines()
        assert line.startswith("error: cannot write ") and "No space left on device" in line
        assert ".exit.json" not in line
        (folder,) = disk.glob("xps/*")
        assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
        assert "failed" in baton("ls", xp_dir=disk).stdout

        (disk / "filler").unlink()
        resumed = baton("run", *args, xp_dir=disk)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert "failed" not in baton("ls", xp_dir=disk).stdout
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_no_room_for_the_first_checkpoint_is_refused_before_training(small_disk: Path) -> None:
    subprocess.run(["dd", "if=/dev/zero", f"of={small_disk / 'filler'}", "bs=64k", "count=96"], capture_output=True, check=True)
    done = baton("run", *ARGS, "task.hidden=16384", xp_dir=small_disk)  # 2 MiB of weights, 2 files
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert "MiB free; the first checkpoint needs at least 4.1 MiB (2 file(s) holding 2.1 MiB of weights)" in line
    assert "free space, or point baton elsewhere" in line
    (folder,) = small_disk.glob("xps/*")
    assert not (folder / "history.jsonl").exists() and "Train" not in done.stdout  # no epoch spent
    assert "failed" in baton("ls", xp_dir=small_disk).stdout
