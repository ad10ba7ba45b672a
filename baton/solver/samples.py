"""Generated samples on disk: samples/<epoch>/<n>_<label>_<what>.wav, each item once.

Under DDP every rank runs `generate` over its own shard of the generate loader (evaluation
samplers deal items round-robin: rank r gets items r, r + W, r + 2W, ...). Naming each item by
that global position (`n * W + r`) gives names unique across ranks, in the order one process
would write them, and keeping the positions below `generate.num_samples` writes exactly that
many items over all ranks, each once. On one process the names are 00, 01, ... as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .. import distrib
from ..data.names import safe_filename


class SampleWriter:
    """Hands out the items of this rank's generate batches that are to be written, with their
    names, and writes their audio.

    Args:
        folder: where the files go (created on the first write).
        limit: items to write over all ranks (`generate.num_samples`).
    """

    def __init__(self, folder: Path, limit: int) -> None:
        self.folder = folder
        self.limit = limit
        self.rank, self.world = distrib.rank(), distrib.world_size()
        self.seen = 0  # items of this rank handed out so far

    @property
    def full(self) -> bool:
        """This rank has no more item to write (the next one's position is past the limit)."""
        return self.seen * self.world + self.rank >= self.limit

    def items(self, count: int, labels: Sequence[Any] | None = None) -> Iterator[tuple[int, int, str]]:
        """(index in the batch, global position, name stem) for the items of a batch of `count`
        that are written: the stem is the position, then the label (a name, never a path)."""
        for i in range(count):
            position = self.seen * self.world + self.rank
            self.seen += 1
            if position >= self.limit:
                continue
            stem = f"{position:02d}"
            label = labels[i] if labels is not None else None
            if label:
                stem += f"_{safe_filename(label)}"
            yield i, position, stem

    def write(self, name: str, wav: Any, sample_rate: int) -> Path:
        """Write `wav` ([channels, time]) as `<name>.wav`."""
        from ..data.audio import write_wav

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{name}.wav"
        write_wav(path, wav.float().cpu(), sample_rate)
        return path
