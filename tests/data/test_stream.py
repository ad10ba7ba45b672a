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
    assert first.state_dict() == {"epoch": 1, "position": 2, "world_size": 1}
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


def test_a_data_epoch_has_as_many_batches_on_any_world_size() -> None:
    """ceil(N / G) batches per rank, whether the sampler pads to the world size or to the
    global batch: padding to the global batch adds no update."""
    from baton.data.loader import build_loader

    for items in (90, 101, 7, 16):
        for world in (1, 2, 4):
            loader = build_loader(list(range(items)), batch_size=8 // world, rank=world - 1,
                                  world_size=world, collate_fn=list)
            assert len(BatchStream(loader)) == -(-items // 8), (items, world)


def warning_on_resume(caplog: pytest.LogCaptureFixture, saved: DataLoader, resumed: DataLoader) -> str:
    stream = BatchStream(saved)
    take(stream, 1)
    caplog.clear()
    with caplog.at_level("WARNING", logger="baton.data.stream"):
        BatchStream(resumed).load_state_dict(stream.state_dict())
    return caplog.text


def test_a_world_size_change_warns_when_the_order_depends_on_it(caplog: pytest.LogCaptureFixture) -> None:
    """The position says on how many ranks it was counted; a loader whose order would change
    with the world size says so on resume, one that keeps it says nothing."""
    from baton.data.bucketing import BucketBatchSampler
    from baton.data.loader import build_loader

    def padded(world: int, **options: object) -> DataLoader:
        return build_loader(list(range(90)), batch_size=8 // world, rank=0, world_size=world,
                            collate_fn=list, **options)  # type: ignore[arg-type]

    assert warning_on_resume(caplog, padded(2), padded(4)) == ""
    assert warning_on_resume(caplog, padded(2, drop_last=True), padded(1, drop_last=True)) == ""

    def to_world(world: int, items: int = 90, drop_last: bool = False) -> DataLoader:
        """Padded to a multiple of the world size (no `global_batch`)."""
        return DataLoader(list(range(items)), batch_size=8 // world, collate_fn=list, drop_last=drop_last,
                          sampler=ResumableSampler(items, rank=0, world_size=world))

    assert warning_on_resume(caplog, to_world(2), to_world(1)) == ""  # both end with 2 items
    # 15 items padded to 16 on 2 and 4 ranks: a full last batch the DataLoader keeps; on 1 rank
    # the last batch holds 7 items, and the DataLoader drops it.
    assert warning_on_resume(caplog, to_world(2, 15, True), to_world(4, 15, True)) == ""
    assert "the last update of each data epoch" in warning_on_resume(caplog, to_world(2, 15, True), to_world(1, 15, True))
    text = warning_on_resume(caplog, to_world(2), to_world(4))
    assert "training data position saved on 2 rank(s), resumed on 4: its ResumableSampler wraps around" in text
    assert "(build it with global_batch=, as build_loader does); resume on 2 rank(s) to keep the data order" in text

    def bucketed(world: int) -> DataLoader:
        durations = [1.0 + (i % 5) for i in range(40)]
        sampler = BucketBatchSampler(durations, max_batch_length=8.0, rank=0, world_size=world)
        return DataLoader(list(range(40)), batch_sampler=sampler, collate_fn=list)

    assert warning_on_resume(caplog, bucketed(2), bucketed(2)) == ""
    text = warning_on_resume(caplog, bucketed(2), bucketed(1))
    assert "saved on 2 rank(s), resumed on 1: its BucketBatchSampler gives each rank whole batches" in text
