"""BatchStream: a checkpointable position in the data, resumed without replaying batches."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from baton.data.rng import sample_generator
from baton.data.sampler import ResumableSampler
from baton.data.stream import BatchStream
from baton.errors import ConfigError


class Augmented(Dataset):
    """Each item gets noise from (seed, epoch, index)."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return 20

    def __getitem__(self, index: int) -> torch.Tensor:
        return index + torch.rand(1, generator=sample_generator(0, self.epoch, index))


def loader(num_workers: int = 0) -> DataLoader:
    dataset = Augmented()
    return DataLoader(dataset, batch_size=4, sampler=ResumableSampler(dataset, seed=7),
                      num_workers=num_workers, generator=torch.Generator())


def take(stream: BatchStream, n: int) -> list[torch.Tensor]:
    return [stream.next() for _ in range(n)]


def test_resumed_stream_yields_what_the_uninterrupted_one_would() -> None:
    straight = take(BatchStream(loader()), 12)  # 5 batches per data epoch: crosses two epochs
    first = BatchStream(loader())
    head = take(first, 7)
    resumed = BatchStream(loader())
    resumed.load_state_dict(first.state_dict())
    assert first.state_dict() == {"epoch": 1, "position": 2}
    tail = take(resumed, 5)
    for a, b in zip(straight, head + tail, strict=False):
        assert torch.equal(a, b)


def test_same_batches_with_zero_and_two_workers() -> None:
    for a, b in zip(take(BatchStream(loader(0)), 6), take(BatchStream(loader(2)), 6), strict=False):
        assert torch.equal(a, b)


def test_creating_iterators_does_not_touch_the_training_rng() -> None:
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    take(BatchStream(loader()), 7)
    assert torch.equal(torch.rand(1), expected)


def test_length_is_a_full_epoch_whatever_the_position() -> None:
    stream = BatchStream(loader())
    take(stream, 2)
    assert len(stream) == 5


def test_plain_loader_resumes_by_replaying() -> None:
    plain = DataLoader(TensorDataset(torch.arange(10)), batch_size=2)
    stream = BatchStream(plain)
    stream.load_state_dict({"epoch": 0, "position": 3})
    assert torch.equal(stream.next()[0], torch.tensor([6, 7]))


def test_persistent_workers_are_refused_for_epoch_aware_datasets() -> None:
    dataset = Augmented()
    with pytest.raises(ValueError, match="persistent_workers=True"):
        BatchStream(DataLoader(dataset, num_workers=1, persistent_workers=True))


def test_fewer_items_than_one_batch_is_one_line_naming_the_numbers() -> None:
    """Rank 0 of 2: 5 items wrap to 3 per rank, fewer than a batch of 4 that drop_last drops."""
    dataset = TensorDataset(torch.arange(5))
    sampler = ResumableSampler(dataset, rank=0, world_size=2)
    with pytest.raises(ConfigError) as error:
        BatchStream(DataLoader(dataset, batch_size=4, sampler=sampler, drop_last=True))
    assert str(error.value) == (
        "no batch to train on: 5 item(s) give 3 per rank on 2 rank(s), fewer than one batch of 4 "
        "per rank (global batch size 8), and drop_last drops partial batches; set "
        "dataset.batch_size to 6 or less, set dataset.drop_last=false, or add data"
    )
    assert len(BatchStream(DataLoader(dataset, batch_size=3, sampler=sampler, drop_last=True))) == 1


def test_an_empty_training_set_is_named_as_such() -> None:
    with pytest.raises(ConfigError, match="^no batch to train on: the training data has 0 items; check its manifest"):
        BatchStream(DataLoader(TensorDataset(torch.arange(0)), batch_size=2))
