"""ResumableSampler: order is a function of (seed, epoch); it starts mid-epoch; training shards
stay even, evaluation shards hold every item once."""

from __future__ import annotations

import pytest

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
