"""The data path resumes exactly: a new process that restores a BatchStream's position gets
the very batches (items and segment offsets) an uninterrupted run would have seen."""

import pytest
import torch

from baton.data import AudioDataset, BatchStream, BucketBatchSampler, build_loader


def _loader(manifest, bucketed: bool):
    dataset = AudioDataset(manifest, sample_rate=16_000, segment_duration=None if bucketed else 0.5,
                           return_info=True, seed=11)
    if bucketed:
        sampler = BucketBatchSampler(dataset.durations(), max_batch_length=4.0, num_buckets=2, seed=11)
        return build_loader(dataset, batch_sampler=sampler, seed=11)
    return build_loader(dataset, batch_size=2, shuffle=True, seed=11, drop_last=True)


def _take(stream: BatchStream, count: int) -> list:
    out = []
    for _ in range(count):
        batch = stream.next()
        out.append(([(i.path, i.offset) for i in batch.infos], batch.wav))
    return out


@pytest.mark.parametrize("bucketed", [False, True], ids=["items", "buckets"])
def test_restored_stream_continues_with_the_same_batches(tone_manifest, bucketed: bool):
    manifest = tone_manifest(count=10, durations=(0.5, 1.0, 1.5, 2.0))
    uninterrupted = _take(BatchStream(_loader(manifest, bucketed), seed=11), 14)  # crosses epochs

    first = BatchStream(_loader(manifest, bucketed), seed=11)
    _take(first, 6)
    resumed = BatchStream(_loader(manifest, bucketed), seed=11)  # as after a restart
    resumed.load_state_dict(first.state_dict())

    for (ids, wav), (expected_ids, expected_wav) in zip(_take(resumed, 8), uninterrupted[6:], strict=True):
        assert ids == expected_ids
        assert torch.equal(wav, expected_wav)
