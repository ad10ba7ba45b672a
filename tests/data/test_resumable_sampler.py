"""ResumableSampler: order is a function of (seed, epoch); it starts mid-epoch; training shards
stay even, evaluation shards hold every item once; with a fixed global batch, the items of each
update, all ranks together, are the same on any world size."""

from __future__ import annotations

import math

import pytest

from baton.data.loader import build_loader
from baton.data.sampler import ResumableSampler


def test_order_depends_on_seed_and_epoch_only() -> None:
    a, b = ResumableSampler(100, seed=3), ResumableSampler(100, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b) and sorted(a) == list(range(100))
    b.set_epoch(3)
    assert list(a) != list(b)
    assert list(ResumableSampler(100, seed=4)) != list(ResumableSampler(100, seed=3))


def test_start_skips_into_the_same_order() -> None:
    sampler = ResumableSampler(50, seed=1)
    sampler.set_epoch(5)
    full = list(sampler)
    sampler.set_epoch(5, start=20)
    assert list(sampler) == full[20:] and len(sampler) == 30


def test_ranks_get_disjoint_equal_shares() -> None:
    shares = []
    for rank in range(3):
        sampler = ResumableSampler(10, seed=0, rank=rank, world_size=3)
        sampler.set_epoch(1)
        shares.append(list(sampler))
    assert [len(s) for s in shares] == [4, 4, 4]  # padded by wrapping: no rank waits on another
    assert set().union(*shares) == set(range(10))
    dropped = [list(ResumableSampler(10, rank=r, world_size=3, drop_last=True)) for r in range(3)]
    assert [len(s) for s in dropped] == [3, 3, 3] and len(set().union(*dropped)) == 9


def test_sequential_and_bad_arguments() -> None:
    assert list(ResumableSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="start 9 outside 0..5"):
        ResumableSampler(5).set_epoch(0, start=9)
    with pytest.raises(ValueError, match="rank 2 is outside world size 2"):
        ResumableSampler(5, rank=2, world_size=2)


def test_evaluation_shards_hold_every_item_exactly_once() -> None:
    for items, world in [(33, 2), (10, 4), (8, 8)]:
        shards = [list(ResumableSampler(items, shuffle=False, rank=r, world_size=world, pad=False))
                  for r in range(world)]
        assert sorted(i for shard in shards for i in shard) == list(range(items))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
        assert [len(ResumableSampler(items, rank=r, world_size=world, pad=False)) for r in range(world)] == list(map(len, shards))
    padded = [list(ResumableSampler(33, shuffle=False, rank=r, world_size=2)) for r in range(2)]
    assert len(padded[1]) == 17 and padded[1][-1] == 0, "training shards wrap around to equal length"


def test_fewer_evaluation_items_than_ranks_is_refused() -> None:
    from baton.data.loader import build_loader
    from baton.errors import ConfigError

    with pytest.raises(ConfigError, match="1 evaluation item\\(s\\) for 2 ranks: every rank needs at least one"):
        build_loader(list(range(1)), batch_size=1, shuffle=False, rank=0, world_size=2, pad=False)


GLOBAL_BATCH = 8


def rank_batches(items: int, world: int, rank: int, epoch: int, start_batch: int = 0,
                 **options: object) -> list[list[int]]:
    """Rank `rank`'s batches of data epoch `epoch` from `build_loader` (the per-rank batch is
    the global one over `world`), starting at its batch `start_batch` as a resume does."""
    loader = build_loader(list(range(items)), batch_size=GLOBAL_BATCH // world, seed=11, rank=rank,
                          world_size=world, collate_fn=list, **options)  # type: ignore[arg-type]
    loader.sampler.set_epoch(epoch, start=start_batch * (GLOBAL_BATCH // world))  # type: ignore[attr-defined]
    return list(loader)


def global_sequence(items: int, world: int, epoch: int, start_batch: int = 0, **options: object) -> list[int]:
    """The items the ranks train on together, update after update: rank r's j-th item of its
    batch k is item k*G + r + W*j of the sequence (strided shards, G the global batch)."""
    shards = [rank_batches(items, world, rank, epoch, start_batch, **options) for rank in range(world)]
    assert len({len(batches) for batches in shards}) == 1, "every rank runs the same number of steps"
    sequence: list[int] = []
    for update in zip(*shards, strict=True):
        merged = [-1] * sum(map(len, update))
        for rank, batch in enumerate(update):
            merged[rank::world] = batch
        sequence += merged
    return sequence


@pytest.mark.parametrize("items", [100, 101, 90, 7, 16])
def test_the_global_order_is_the_same_on_any_world_size(items: int) -> None:
    """Padded to a multiple of the global batch: every update, the last one of a data epoch
    included, trains on the same 8 items on 1, 2 or 4 ranks (over two data epochs)."""
    for epoch in (0, 1):
        alone = global_sequence(items, 1, epoch)
        assert len(alone) == math.ceil(items / GLOBAL_BATCH) * GLOBAL_BATCH  # ceil(N / G) updates
        assert set(alone) == set(range(items)) and alone[items:] == alone[: len(alone) - items]
        for world in (2, 4):
            assert global_sequence(items, world, epoch) == alone, (items, world, epoch)
    assert global_sequence(items, 1, 0) != global_sequence(items, 1, 1)


@pytest.mark.parametrize("items", [100, 101, 7])
def test_a_resume_mid_epoch_on_another_world_size_continues_the_sequence(items: int) -> None:
    """A position of k batches (of one rank) is k global batches on any world size: ranks that
    start at their batch k (`set_epoch(e, start=k * b)`) continue the very same sequence."""
    for epoch in (0, 1):
        alone = global_sequence(items, 1, epoch)
        for start_batch in range(math.ceil(items / GLOBAL_BATCH) + 1):
            for world in (1, 2, 4):
                resumed = global_sequence(items, world, epoch, start_batch)
                assert resumed == alone[start_batch * GLOBAL_BATCH :], (items, world, epoch, start_batch)


def test_dropping_the_last_batch_was_already_the_same_on_any_world_size() -> None:
    """floor(floor(N / W) / b) = floor(N / G) full batches per rank: the first floor(N / G) * G
    items of the order, whatever W."""
    for items in (100, 101, 90, 15):
        alone = global_sequence(items, 1, 0, drop_last=True)
        assert len(alone) == items // GLOBAL_BATCH * GLOBAL_BATCH
        for world in (2, 4):
            assert global_sequence(items, world, 0, drop_last=True) == alone


def test_padding_to_the_world_size_would_change_the_last_update() -> None:
    """Why the global batch: 90 items wrapped around to a multiple of W end with an update of 2
    items on 1 or 2 ranks, of 4 on 4 ranks."""
    def last_update(world: int) -> int:
        shards = [ResumableSampler(90, seed=11, rank=r, world_size=world) for r in range(world)]
        return sum(len(list(shard)) for shard in shards) - (90 // GLOBAL_BATCH) * GLOBAL_BATCH

    assert [last_update(world) for world in (1, 2, 4)] == [2, 2, 4]
    padded = ResumableSampler(90, seed=11, rank=0, world_size=4, global_batch=GLOBAL_BATCH)
    assert len(padded) == 24 and math.ceil(len(padded) / 2) == math.ceil(90 / GLOBAL_BATCH)


def test_a_global_batch_that_does_not_divide_by_the_world_size_is_refused() -> None:
    with pytest.raises(ValueError, match="global batch 6 is not a positive multiple of the world size 4"):
        ResumableSampler(10, rank=0, world_size=4, global_batch=6)
    # Evaluation shards ignore it: each item on one rank, none repeated.
    shards = [list(ResumableSampler(10, rank=r, world_size=4, pad=False, global_batch=8)) for r in range(4)]
    assert sorted(i for shard in shards for i in shard) == list(range(10))
