"""Manifests: one JSON line per audio file, so a dataset never has to open every file to start.

A line holds `path`, `duration` (seconds), `sample_rate`, `channels`, optionally `label`, and
any other keys (kept in `AudioMeta.extra`). A relative `path` is resolved against the
manifest's folder, so a dataset folder with its manifests can be moved as one piece.

An item of several aligned files (noisy and clean, mixture and sources) names them in `audio`:
`{"path": "noisy/a.wav", ..., "audio": {"noisy": "noisy/a.wav", "clean": "clean/a.wav"}}`, each
path resolved like `path` (the first stream's), all of one length and rate (`baton data manifest
--pair NAME=DIR ...` writes such lines, see pairs.py); `AudioDataset` crops them alike.

Bad lines are reported with the manifest path and the 1-based line number: that is the only
place the user can fix them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from ..atomic import atomic_write
from ..errors import DataError
from .audio import AUDIO_EXTENSIONS, audio_info

logger = logging.getLogger(__name__)

REQUIRED_KEYS = ("path", "duration", "sample_rate", "channels")
# Names a stream of a paired item cannot take: a batch already has fields by these names.
RESERVED_STREAMS = ("wav", "lengths", "labels", "infos")


@dataclass
class AudioMeta:
    path: str
    duration: float
    sample_rate: int
    channels: int
    label: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Where this entry came from ("manifest.jsonl:12"), for error messages.
    origin: str | None = None
    # Named aligned files of a paired item (stream name -> path), or empty for one file.
    audio: dict[str, str] = field(default_factory=dict)

    def to_json(self, relative_to: Path | None = None) -> dict[str, Any]:
        line: dict[str, Any] = {
            "path": _relative(self.path, relative_to),
            "duration": round(self.duration, 6),
            "sample_rate": self.sample_rate,
            "channels": self.channels,
        }
        if self.label is not None:
            line["label"] = self.label
        if self.audio:
            line["audio"] = {name: _relative(path, relative_to) for name, path in self.audio.items()}
        line.update(self.extra)
        return line


def _relative(path: str, base: Path | None) -> str:
    """`path` relative to `base` when it lies under it (else absolute), with forward slashes."""
    resolved = Path(path)
    if base is not None and resolved.is_absolute():
        try:
            resolved = resolved.relative_to(base)
        except ValueError:
            pass  # outside the manifest's folder: keep it absolute
    return resolved.as_posix()


def read_manifest(
    path: str | Path,
    *,
    check_files: bool = True,
    on_missing: Literal["raise", "skip"] = "raise",
) -> list[AudioMeta]:
    """Entries of a jsonl manifest, with paths made absolute.

    Args:
        check_files: verify each audio file exists (one `stat` per line).
        on_missing: a line naming a missing file raises, or is logged with its line number and
            dropped.

    Raises:
        DataError: `path:line: ...` for bad JSON, a missing key, a bad value, or (with
            `on_missing="raise"`) a missing audio file.
    """
    manifest = Path(path)
    if not manifest.is_file():
        raise DataError(f"manifest {manifest} does not exist; create it with `baton data manifest DIR -o {manifest}`")
    base = manifest.resolve().parent
    entries: list[AudioMeta] = []
    with manifest.open(encoding="utf-8") as handle:
        for lineno, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            where = f"{manifest}:{lineno}"
            entry = _parse_line(text, where, base)
            missing = [p for p in (entry.path, *entry.audio.values()) if not os.path.exists(p)] if check_files else []
            if missing:
                message = f"{where}: audio file not found: {missing[0]}; fix the path or rebuild the manifest"
                if on_missing == "raise":
                    raise DataError(message)
                logger.warning("skipping %s", message)
                continue
            entries.append(entry)
    return entries


def _parse_line(text: str, where: str, base: Path) -> AudioMeta:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno}); fix or remove the line") from exc
    if not isinstance(data, dict):
        raise DataError(f"{where}: expected a JSON object with keys {', '.join(REQUIRED_KEYS)}")
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise DataError(f"{where}: missing key(s) {', '.join(missing)}; each line needs {', '.join(REQUIRED_KEYS)}")
    try:
        duration = float(data.pop("duration"))
        sample_rate = int(data.pop("sample_rate"))
        channels = int(data.pop("channels"))
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: duration, sample_rate and channels must be numbers ({exc})") from exc
    audio = Path(str(data.pop("path")))
    if not audio.is_absolute():
        audio = base / audio
    label = data.pop("label", None)
    streams = data.pop("audio", None) or {}
    if not isinstance(streams, dict) or not all(isinstance(v, str) for v in streams.values()):
        raise DataError(f"{where}: 'audio' must map stream names to file paths, e.g. {{\"noisy\": \"noisy/a.wav\", \"clean\": \"clean/a.wav\"}}")
    reserved = sorted(set(streams) & set(RESERVED_STREAMS))
    if reserved:
        raise DataError(f"{where}: stream name '{reserved[0]}' is taken by a batch field ({', '.join(RESERVED_STREAMS)}); rename the stream")
    return AudioMeta(
        path=str(audio),
        duration=duration,
        sample_rate=sample_rate,
        channels=channels,
        label=None if label is None else str(label),
        extra=data,
        origin=where,
        audio={name: str(path if (path := Path(value)).is_absolute() else base / path) for name, value in streams.items()},
    )


def write_manifest(path: str | Path, entries: Iterable[AudioMeta]) -> None:
    """Write entries atomically (see `baton.atomic`), paths relative to the manifest's folder
    when the audio lies under it. Lines are streamed: a manifest of a million files is never
    held as one string."""
    manifest = Path(path)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    base = manifest.resolve().parent

    def write(handle: BinaryIO) -> None:
        for entry in entries:
            handle.write((json.dumps(entry.to_json(relative_to=base)) + "\n").encode("utf-8"))

    atomic_write(manifest, write)


@dataclass
class ScanReport:
    entries: list[AudioMeta]
    failures: list[tuple[str, str]]  # (path, reason) of files that could not be read


def find_audio_files(root: str | Path) -> list[Path]:
    """Audio files (wav, flac, ogg; any case) under `root`, sorted so manifests are stable."""
    found = [
        Path(folder) / name
        for folder, _, names in os.walk(root)
        for name in names
        if name.lower().endswith(AUDIO_EXTENSIONS)
    ]
    return sorted(found)


def scan_folder(
    root: str | Path,
    *,
    label_from_parent: bool = False,
    jobs: int | None = None,
    progress: bool = True,
) -> ScanReport:
    """Read the header of every audio file under `root` in a thread pool.

    libsndfile releases the GIL while parsing, so threads give real parallelism here without
    the start-up cost of processes. Unreadable files are collected in the report, not raised.

    Raises:
        DataError: `root` is not a folder.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; give the folder that holds the audio files")
    files = find_audio_files(folder)
    jobs = jobs or min(32, (os.cpu_count() or 1) * 4)

    def probe(path: Path) -> AudioMeta | tuple[str, str]:
        try:
            info = audio_info(path)
        except DataError as exc:
            return (str(path), str(exc))
        if info.frames == 0:
            return (str(path), "no audio frames (zero-length)")
        return AudioMeta(
            path=str(path.resolve()),
            duration=info.duration,
            sample_rate=info.sample_rate,
            channels=info.channels,
            label=path.parent.name if label_from_parent else None,
        )

    results: list[AudioMeta | tuple[str, str]] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool, _progress(progress, len(files), folder) as advance:
        for result in pool.map(probe, files):
            results.append(result)
            advance()
    entries = [r for r in results if isinstance(r, AudioMeta)]
    failures = [r for r in results if not isinstance(r, AudioMeta)]
    return ScanReport(entries=entries, failures=failures)


class _progress:
    """A rich progress bar on a terminal, nothing otherwise (logs and CI stay clean)."""

    def __init__(self, enabled: bool, total: int, folder: Path) -> None:
        self.bar = None
        if enabled:
            from rich.progress import Progress

            self.bar = Progress(transient=True)
            self.task = self.bar.add_task(f"scanning {folder}", total=total)

    def __enter__(self):
        if self.bar is None:
            return lambda: None
        self.bar.start()
        return lambda: self.bar.advance(self.task)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def labels_of(entries: Sequence[AudioMeta]) -> list[str]:
    """The sorted set of labels: the class order a classifier trained on `entries` uses."""
    return sorted({e.label for e in entries if e.label is not None})
