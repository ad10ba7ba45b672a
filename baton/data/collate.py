"""Batching variable-length audio: pad to the longest item and keep each item's true length.

Losses and metrics take `lengths` (or `mask()`) so padding never counts as signal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .dataset import AudioItem, SegmentInfo


@dataclass
class AudioBatch:
    wav: torch.Tensor               # [batch, channels, time], zero-padded
    lengths: torch.Tensor           # [batch] int64, valid frames of each item
    labels: torch.Tensor | None = None   # [batch] int64 when the dataset has labels
    infos: list[SegmentInfo] | None = None
    streams: dict[str, torch.Tensor] | None = None  # paired items: name -> [batch, channels, time]

    def __len__(self) -> int:
        return self.wav.shape[0]

    def mask(self) -> torch.Tensor:
        """[batch, time] bool, True on valid frames."""
        steps = torch.arange(self.wav.shape[-1], device=self.wav.device)
        return steps[None, :] < self.lengths[:, None]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> AudioBatch:
        labels = None if self.labels is None else self.labels.to(device, non_blocking=non_blocking)
        streams = None if self.streams is None else {
            name: wav.to(device, non_blocking=non_blocking) for name, wav in self.streams.items()}
        return AudioBatch(
            wav=self.wav.to(device, non_blocking=non_blocking),
            lengths=self.lengths.to(device, non_blocking=non_blocking),
            labels=labels,
            infos=self.infos,
            streams=streams,
        )

    def pin_memory(self) -> AudioBatch:
        # DataLoader(pin_memory=True) calls this on custom batch types.
        labels = None if self.labels is None else self.labels.pin_memory()
        streams = None if self.streams is None else {name: wav.pin_memory() for name, wav in self.streams.items()}
        return AudioBatch(self.wav.pin_memory(), self.lengths.pin_memory(), labels, self.infos, streams)

    def as_dict(self) -> dict[str, Any]:
        """Keys `wav`, `lengths`, `labels` / `infos` when present, and each stream of paired
        items by its name (`noisy`, `clean`): for dict-based steps."""
        out: dict[str, Any] = {"wav": self.wav, "lengths": self.lengths}
        if self.labels is not None:
            out["labels"] = self.labels
        if self.infos is not None:
            out["infos"] = self.infos
        out.update(self.streams or {})
        return out


def collate_audio(items: Sequence[AudioItem]) -> AudioBatch:
    """Stack `AudioItem`s into an `AudioBatch`, zero-padding to the longest.

    Labels are stacked only when every item has one: a half-labelled batch is a dataset bug
    and raises rather than silently dropping labels.
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    longest = max(item.wav.shape[-1] for item in items)
    # Pad item by item, then stack: filling one big zero tensor goes through torch's thread
    # pool, and waking it for every batch costs milliseconds on a busy CPU.
    wav = torch.stack([torch.nn.functional.pad(item.wav, (0, longest - item.wav.shape[-1])) for item in items])
    lengths = torch.tensor([item.length for item in items], dtype=torch.long)
    has_label = [item.label is not None for item in items]
    if any(has_label) and not all(has_label):
        raise ValueError("some items in the batch have a label and some do not")
    labels = torch.tensor([item.label for item in items], dtype=torch.long) if all(has_label) else None
    infos = [item.info for item in items] if all(item.info is not None for item in items) else None
    streams = None
    if items[0].streams is not None:
        names = list(items[0].streams)
        if any(item.streams is None or list(item.streams) != names for item in items):
            raise ValueError(f"items of one batch have different streams (the first has {names}); use one manifest layout per dataset")
        streams = {name: torch.stack([torch.nn.functional.pad(s[name], (0, longest - s[name].shape[-1]))
                                      for s in (item.streams for item in items) if s is not None]) for name in names}
        wav = streams[names[0]]
    return AudioBatch(wav=wav, lengths=lengths, labels=labels, infos=infos, streams=streams)  # type: ignore[arg-type]
