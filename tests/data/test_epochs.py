"""The epoch reaches datasets behind wrappers: random crops change from one epoch to the next
even when a Subset or a user's wrapper (that forgets to forward `set_epoch`) sits in front."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from baton.data.dataset import AudioDataset
from baton.data.epochs import set_epoch, walk_datasets
from baton.data.loader import build_loader
from baton.data.stream import BatchStream


class Gain(Dataset):
    """A user's augmentation wrapper: no `set_epoch` of its own, inner dataset as `self.source`."""

    def __init__(self, source: Dataset, gain: float) -> None:
        self.source = source
        self.gain = gain

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        item = self.source[index]
        item.wav = item.wav * self.gain
        return item


class ForgetsToForward(Gain):
    """Has a `set_epoch`, for its own use, and does not pass it on: the classic bug."""

    def __init__(self, source: Dataset, gain: float) -> None:
        super().__init__(source, gain)
        self.epoch = -1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class HalvesTheEpoch(Gain):
    """Forwards its own notion of the epoch: it keeps the last word over the walk."""

    def set_epoch(self, epoch: int) -> None:
        self.source.set_epoch(epoch // 2)  # type: ignore[attr-defined]


def cropping(manifest: Path) -> AudioDataset:
    return AudioDataset(manifest, sample_rate=16_000, segment_duration=0.25, random_crop=True, seed=3)


def epochs_of_crops(dataset: Dataset, epochs: int, num_workers: int = 0) -> list[torch.Tensor]:
    """Every batch's audio of `epochs` data epochs, in a fixed order (no shuffle)."""
    loader = build_loader(dataset, batch_size=4, shuffle=False, num_workers=num_workers, world_size=1, rank=0)
    stream = BatchStream(loader)
    per_epoch = len(stream)
    batches = [stream.next().wav for _ in range(per_epoch * epochs)]
    return [torch.cat(batches[e * per_epoch:(e + 1) * per_epoch]) for e in range(epochs)]


@pytest.mark.parametrize(
    "wrap",
    [
        lambda d: Subset(d, list(range(6))),
        lambda d: Gain(d, 0.5),
        lambda d: ForgetsToForward(d, 0.5),
        lambda d: Gain(Subset(ForgetsToForward(d, 2.0), [5, 4, 3, 2, 1, 0]), 0.5),
        lambda d: ConcatDataset([Subset(d, [0, 1]), Gain(d, 0.5)]),
    ],
    ids=["subset", "wrapper", "non-forwarding-wrapper", "nested", "concat"],
)
def test_random_crops_differ_between_epochs_behind_wrappers(
    tone_manifest: Callable[..., Path], wrap: Callable[[Dataset], Dataset]
) -> None:
    inner = cropping(tone_manifest(count=6, durations=(1.0, 2.0)))
    first, second, third = epochs_of_crops(wrap(inner), 3)
    assert inner.epoch == 2
    assert not torch.equal(first, second) and not torch.equal(second, third)
    # ... and they are still a function of (seed, epoch, index): a fresh run sees the same.
    again = epochs_of_crops(wrap(cropping(tone_manifest(count=6, durations=(1.0, 2.0)))), 3)
    assert all(torch.equal(a, b) for a, b in zip((first, second, third), again, strict=True))


def test_workers_receive_the_epoch_of_the_wrapped_dataset(tone_manifest: Callable[..., Path]) -> None:
    manifest = tone_manifest(count=6, durations=(1.0, 2.0))
    in_process = epochs_of_crops(ForgetsToForward(cropping(manifest), 0.5), 2)
    in_workers = epochs_of_crops(ForgetsToForward(cropping(manifest), 0.5), 2, num_workers=2)
    assert not torch.equal(*in_workers)
    assert all(torch.equal(a, b) for a, b in zip(in_process, in_workers, strict=True))


def test_a_forwarding_wrapper_keeps_the_last_word(tone_manifest: Callable[..., Path]) -> None:
    inner = cropping(tone_manifest(count=4))
    wrapper = HalvesTheEpoch(inner, 1.0)
    set_epoch(wrapper, 5)
    assert inner.epoch == 2


def test_each_dataset_is_told_once_inner_first(tone_manifest: Callable[..., Path]) -> None:
    calls: list[str] = []

    class Recording(Dataset):
        def __init__(self, name: str, *inner: Dataset) -> None:
            self.name, self.parts = name, list(inner)

        def set_epoch(self, epoch: int) -> None:
            calls.append(self.name)

    shared = Recording("shared")
    top = Recording("top", Recording("left", shared), Recording("right", shared))
    top.parts.append(top)  # a cycle
    assert set_epoch(top, 1) == 4
    assert calls == ["shared", "left", "right", "top"]
    assert walk_datasets(top)[-1] is top


def test_persistent_workers_are_refused_when_a_wrapped_dataset_is_epoch_aware(
    tone_manifest: Callable[..., Path],
) -> None:
    wrapped = Subset(cropping(tone_manifest(count=4)), [0, 1, 2, 3])
    with pytest.raises(ValueError, match="persistent_workers=True"):
        BatchStream(DataLoader(wrapped, batch_size=2, num_workers=1, persistent_workers=True))


def test_a_manifest_list_is_not_walked(tone_manifest: Callable[..., Path]) -> None:
    dataset = cropping(tone_manifest(count=4))
    subset = Subset(dataset, [0])
    assert walk_datasets(subset) == [dataset, subset]
