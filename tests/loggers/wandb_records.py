"""Read a W&B offline run file (`run-<id>.wandb`) without wandb's service: the file is a
LevelDB-style log (32 KiB blocks of [crc32, length, type] framed chunks after a 7-byte header)
of protobuf `Record`s, which wandb's own `wandb.proto` module parses."""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7  # b":W&B" + magic (2 bytes) + version (1 byte)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path, timeout: float = 30.0) -> list[Any]:
    """The run's records, once its `exit` record is in: `run.finish()` can return before
    wandb's service process has written the offline file, so the reader waits for it."""
    deadline = time.monotonic() + timeout
    while True:
        found = _read(path)
        if any(r.WhichOneof("record_type") == "exit" for r in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _read(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    chunks, pending, pos = [], b"", HEADER
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # block trailer: padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == FULL:
            chunks.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            chunks.append(pending + chunk)
    parsed = []
    for chunk in chunks:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(chunk)
        parsed.append(record)
    return parsed


def run_id(path: Path) -> str:
    return next(r.run.run_id for r in records(path) if r.WhichOneof("record_type") == "run")


def history(path: Path) -> list[dict[str, str]]:
    """Each `run.log` step as {key: JSON value}, with '_step'."""
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): item.value_json for item in record.history.item})
    return rows
