"""Randomness in data is a function of (seed, epoch, index), never of the worker count."""

import torch

from baton.data import AudioDataset, BucketBatchSampler, build_loader


def _epoch(loader, epoch: int) -> list:
    loader.dataset.set_epoch(epoch)
    sampler = loader.batch_sampler if hasattr(loader.batch_sampler, "set_epoch") else loader.sampler
    sampler.set_epoch(epoch)
    return list(loader)


def _fingerprint(batches) -> list:
    return [(info.path, info.offset) for batch in batches for info in batch.infos]


def test_offsets_and_order_are_the_same_with_0_and_2_workers(tone_manifest):
    manifest = tone_manifest(count=12, durations=(1.0, 1.5, 2.0))
    runs = {}
    for workers in (0, 2):
        dataset = AudioDataset(manifest, sample_rate=16_000, segment_duration=0.5, return_info=True, seed=5)
        loader = build_loader(dataset, batch_size=3, shuffle=True, seed=5, num_workers=workers)
        runs[workers] = [_epoch(loader, epoch) for epoch in (0, 1)]

    for epoch in (0, 1):
        assert _fingerprint(runs[0][epoch]) == _fingerprint(runs[2][epoch])
        for a, b in zip(runs[0][epoch], runs[2][epoch], strict=True):
            assert torch.equal(a.wav, b.wav)
    assert _fingerprint(runs[0][0]) != _fingerprint(runs[0][1])  # a new epoch, a new draw


def test_bucketed_batches_are_the_same_with_0_and_2_workers(tone_manifest):
    manifest = tone_manifest(count=12, durations=(0.5, 1.0, 1.5, 2.0))
    runs = {}
    for workers in (0, 2):
        dataset = AudioDataset(manifest, sample_rate=16_000, return_info=True)
        sampler = BucketBatchSampler(dataset.durations(), max_batch_length=3.0, num_buckets=2, seed=1)
        loader = build_loader(dataset, batch_sampler=sampler, num_workers=workers)
        runs[workers] = _epoch(loader, 1)

    assert _fingerprint(runs[0]) == _fingerprint(runs[2])
    assert [b.lengths.tolist() for b in runs[0]] == [b.lengths.tolist() for b in runs[2]]
