import pytest

from baton.data import BucketBatchSampler

# Durations from 0.5 s to 5 s, in a scrambled order.
DURATIONS = [0.5 + ((i * 37) % 46) / 10 for i in range(100)]


def test_batches_stay_within_budget_and_cover_every_item_once():
    sampler = BucketBatchSampler(DURATIONS, max_batch_length=12.0, num_buckets=5, seed=0)

    batches = list(sampler)

    for batch in batches:
        assert len(batch) * max(DURATIONS[i] for i in batch) <= 12.0
    assert sorted(i for b in batches for i in b) == list(range(len(DURATIONS)))
    # Buckets group similar lengths: short items come in bigger batches than long ones.
    sizes = {max(DURATIONS[i] for i in b): len(b) for b in batches}
    assert sizes[min(sizes)] > sizes[max(sizes)]


def test_an_item_over_budget_gets_a_batch_of_its_own_and_max_batch_size_caps_batches():
    sampler = BucketBatchSampler([1.0] * 6 + [30.0], max_batch_length=10.0, max_batch_size=4, shuffle=False)
    assert list(sampler) == [[0, 1, 2, 3], [4, 5], [6]]


def test_order_is_a_function_of_seed_and_epoch():
    def order(seed, epoch):
        sampler = BucketBatchSampler(DURATIONS, max_batch_length=12.0, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(0, 3) == order(0, 3)
    assert order(0, 3) != order(0, 4)
    assert order(0, 3) != order(1, 3)


def test_resume_mid_epoch_yields_exactly_the_remaining_batches():
    uninterrupted = BucketBatchSampler(DURATIONS, max_batch_length=12.0, seed=3)
    uninterrupted.set_epoch(2)
    full = list(uninterrupted)

    resumed = BucketBatchSampler(DURATIONS, max_batch_length=12.0, seed=3)  # a new process
    resumed.set_epoch(2, start=5)

    assert len(resumed) == len(full) - 5
    assert list(resumed) == full[5:]
    with pytest.raises(ValueError, match="start"):
        resumed.set_epoch(2, start=len(full) + 1)


@pytest.mark.parametrize("drop_last", [False, True])
def test_every_rank_gets_the_same_number_of_batches(drop_last: bool):
    for epoch in range(4):
        ranks = []
        for rank in range(3):
            sampler = BucketBatchSampler(DURATIONS, max_batch_length=7.0, seed=9, rank=rank, world_size=3,
                                         drop_last=drop_last)
            sampler.set_epoch(epoch)
            ranks.append(list(sampler))
        assert len({len(batches) for batches in ranks}) == 1
        items = [i for batches in ranks for b in batches for i in b]
        if drop_last:
            assert len(items) == len(set(items))  # nothing seen twice
        else:
            assert set(items) == set(range(len(DURATIONS)))  # nothing left out
