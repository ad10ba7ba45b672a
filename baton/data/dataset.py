"""`AudioDataset`: segments of the files in a manifest, at the rate and channel count a model wants.

Random segment offsets come from `sample_generator(seed, epoch, index)`, so the audio an item
yields depends only on (seed, epoch, index): not on the worker that loads it, nor on how often
training was restarted. The engine calls `set_epoch` before creating each DataLoader iterator;
workers are not persistent, so each iterator's workers receive the current epoch.

A file that cannot be read follows `on_error`: "raise" stops with a `DataError` naming the path;
"skip" logs the path, counts it, and serves the next readable item in manifest order instead
(still with the failed index's random draw), so the replacement is deterministic as well.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .audio import convert_channels, read_audio, resample
from .manifest import AudioMeta, labels_of, read_manifest
from .rng import sample_generator

logger = logging.getLogger(__name__)

OnError = Literal["skip", "raise"]


@dataclass(frozen=True)
class SegmentInfo:
    """Where an item's audio came from, e.g. to write a generated sample next to its source."""

    path: str
    index: int              # position in the dataset (after filters); differs from the requested
                            # index when a bad file was skipped
    offset: float           # seconds into the file
    frames: int             # valid frames in the item, at the target rate (the rest is padding)
    total_frames: int       # length of the whole file, at the target rate
    sample_rate: int        # the target rate
    label: str | None


@dataclass
class AudioItem:
    wav: torch.Tensor       # [channels, time]; of a paired item, its first stream
    length: int             # valid frames; frames after it are padding
    label: int | None = None
    info: SegmentInfo | None = None
    streams: dict[str, torch.Tensor] | None = None  # a paired item's streams, cropped alike


class AudioDataset(Dataset[AudioItem]):
    """Audio from a manifest, whole files or fixed-length segments.

    Args:
        manifest: a jsonl manifest path, or entries already read.
        sample_rate: target rate; files at other rates are resampled (julius).
        channels: target channel count (mono mixdown, mono repeated, or first channels kept).
        segment_duration: seconds per item; None yields whole files.
        random_crop: draw the segment offset at random (training); False starts at 0.
        pad: zero-pad segments of files shorter than `segment_duration` to full length.
        min_duration, max_duration: drop files outside these bounds (seconds) when loading.
        classes: label order; defaults to the sorted labels of this manifest. Pass the training
            set's `classes` to validation and test sets so label ids agree.
        return_info: attach a `SegmentInfo` to each item.
        on_error: "skip" or "raise" for unreadable, corrupt, zero-length or missing files.
        seed: the XP seed; with the epoch and index, it fixes every random offset.
        streams: the stream names every item of a paired manifest must have (`audio` of
            each line); None accepts what the manifest holds.
    """

    def __init__(
        self,
        manifest: str | Path | Sequence[AudioMeta],
        *,
        sample_rate: int,
        channels: int = 1,
        segment_duration: float | None = None,
        random_crop: bool = True,
        pad: bool = True,
        min_duration: float | None = None,
        max_duration: float | None = None,
        classes: Sequence[str] | None = None,
        return_info: bool = False,
        on_error: OnError = "skip",
        seed: int = 0,
        streams: Sequence[str] | None = None,
    ) -> None:
        if on_error not in ("skip", "raise"):
            raise DataError(f"on_error must be 'skip' or 'raise', got '{on_error}'")
        if isinstance(manifest, (str, Path)):
            entries = read_manifest(manifest, on_missing=on_error)
        else:
            entries = list(manifest)
        self.entries = _filter_durations(entries, min_duration, max_duration)
        if not self.entries:
            raise DataError(f"no audio left in {manifest!s:.200} after filtering; check min/max_duration and the manifest")
        self.sample_rate = sample_rate
        self.channels = channels
        self.segment_duration = segment_duration
        self.segment_frames = None if segment_duration is None else int(round(segment_duration * sample_rate))
        self.random_crop = random_crop
        self.pad = pad
        self.classes = list(classes) if classes is not None else labels_of(self.entries)
        self._class_ids = {name: i for i, name in enumerate(self.classes)}
        for entry in self.entries:
            if entry.label is not None and entry.label not in self._class_ids:
                raise DataError(f"{entry.origin or entry.path}: label '{entry.label}' is not one of the classes {self.classes}; pass the training set's classes")
        if streams is not None:
            for entry in self.entries:
                if sorted(entry.audio) != sorted(streams):
                    held = ", ".join(entry.audio) or "one file, no streams"
                    raise DataError(f"{entry.origin or entry.path}: the item has {held}, dataset.streams asks for {', '.join(streams)}; "
                                    "fix dataset.streams or write the manifest with --pair")
        self.return_info = return_info
        self.on_error = on_error
        self.seed = seed
        self.epoch = 0
        self.num_skipped = 0  # reads that failed in this process (each worker counts its own)
        self._bad: set[int] = set()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> AudioItem:
        generator = sample_generator(self.seed, self.epoch, index)
        for step in range(len(self.entries)):
            candidate = (index + step) % len(self.entries)
            if candidate in self._bad:
                continue
            try:
                return self._load(candidate, generator)
            except DataError as exc:
                if self.on_error == "raise":
                    raise
                self._bad.add(candidate)
                self.num_skipped += 1
                # The message names the file; the count is this process's (each worker has one).
                logger.warning("skipped (%d so far): %s", self.num_skipped, exc)
                generator = sample_generator(self.seed, self.epoch, index)
        raise DataError(f"every file in the dataset failed to load (first: {self.entries[0].path}); check the manifest")

    def _load(self, index: int, generator: torch.Generator) -> AudioItem:
        entry = self.entries[index]
        source_rate = entry.sample_rate
        offset = 0
        frames = -1
        if self.segment_duration is not None:
            frames = int(math.ceil(self.segment_duration * source_rate))
            if source_rate != self.sample_rate:
                frames += 2  # so rounding in the resampler never leaves the last frame empty
            if self.random_crop:
                # Always draw, even for short files, so the generator state stays uniform.
                draw = float(torch.rand((), generator=generator))
                slack = max(0, int(entry.duration * source_rate) - frames)
                offset = int(draw * (slack + 1))
        streams = None
        if entry.audio:  # every stream of a paired item read at the same offset, for as long
            streams = {name: self._read(path, entry, offset, frames)[0] for name, path in entry.audio.items()}
            lengths = {name: wav.shape[-1] for name, wav in streams.items()}
            if len(set(lengths.values())) > 1:
                raise DataError(f"{entry.origin or entry.path}: the streams of one item differ in length "
                                f"({', '.join(f'{n} {k}' for n, k in lengths.items())} frames); rebuild the manifest with --pair")
            wav, file_rate = next(iter(streams.values())), entry.sample_rate
        else:
            wav, file_rate = self._read(entry.path, entry, offset, frames)
        length = wav.shape[-1]
        if self.segment_frames is not None:
            length = min(length, self.segment_frames)
            wav = self._fit(wav)
            if streams is not None:
                streams = {name: self._fit(audio) for name, audio in streams.items()}
                wav = next(iter(streams.values()))
        label = None if entry.label is None else self._class_ids[entry.label]
        info = None
        if self.return_info:
            info = SegmentInfo(
                path=entry.path,
                index=index,
                offset=offset / file_rate,
                frames=length,
                total_frames=int(round(entry.duration * self.sample_rate)),
                sample_rate=self.sample_rate,
                label=entry.label,
            )
        return AudioItem(wav=wav, length=length, label=label, info=info, streams=streams)

    def _read(self, path: str, entry: AudioMeta, offset: int, frames: int) -> tuple[torch.Tensor, int]:
        """`frames` frames of `path` from `offset`, at the target channels and rate."""
        wav, file_rate = read_audio(path, offset=offset, frames=frames)
        if wav.shape[-1] == 0:
            raise DataError(f"audio file {path} has no frames at offset {offset} (manifest says {entry.duration:.3f}s); rebuild the manifest")
        if file_rate != entry.sample_rate:
            # The manifest is stale; trust the file but the offset was computed on the wrong rate.
            logger.warning("%s: manifest says %d Hz, file is %d Hz", path, entry.sample_rate, file_rate)
        wav = convert_channels(wav, self.channels)
        return resample(wav, file_rate, self.sample_rate), file_rate

    def _fit(self, wav: torch.Tensor) -> torch.Tensor:
        """Cut to `segment_frames`, and zero-pad up to it when `pad`."""
        assert self.segment_frames is not None
        wav = wav[..., : self.segment_frames]
        if self.pad and wav.shape[-1] < self.segment_frames:
            wav = torch.nn.functional.pad(wav, (0, self.segment_frames - wav.shape[-1]))
        return wav

    def durations(self) -> list[float]:
        """Per-item durations in seconds as the model sees them, for length-bucketed batching."""
        if self.segment_duration is None:
            return [e.duration for e in self.entries]
        if self.pad:
            return [self.segment_duration] * len(self.entries)
        return [min(e.duration, self.segment_duration) for e in self.entries]


def _filter_durations(entries: list[AudioMeta], low: float | None, high: float | None) -> list[AudioMeta]:
    kept = [e for e in entries if (low is None or e.duration >= low) and (high is None or e.duration <= high)]
    if len(kept) != len(entries):
        logger.info("duration filter [%s, %s] s kept %d of %d files", low, high, len(kept), len(entries))
    return kept
