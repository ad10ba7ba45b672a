"""`build_loader` refuses, before any model is built, training data that cannot fill one batch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from baton.data import AudioDataset, build_loader
from baton.errors import ConfigError


def test_fewer_items_than_one_batch_with_drop_last_is_a_config_error(tone_manifest: Callable[..., Path]):
    dataset = AudioDataset(tone_manifest(count=3), sample_rate=16_000, segment_duration=0.5)
    with pytest.raises(ConfigError) as error:
        build_loader(dataset, batch_size=4, drop_last=True, rank=0, world_size=1)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("no batch to train on: 3 item(s) give 3 per rank on 1 rank(s), fewer than one batch of 4")
    assert message.endswith("set dataset.batch_size to 3 or less, set dataset.drop_last=false, or add data")

    # Without drop_last there is one batch, nothing to refuse: the 3 items, filled up to the
    # global batch of 4 by wrapping around (the same items as on 2 or 4 ranks, see sampler.py).
    loader = build_loader(dataset, batch_size=4, drop_last=False, shuffle=False, rank=0, world_size=1)
    (batch,) = list(loader)
    assert list(loader.sampler) == [0, 1, 2, 0] and len(batch) == 4


def test_fewer_items_than_ranks_suggests_keeping_partial_batches(tone_manifest: Callable[..., Path]):
    dataset = AudioDataset(tone_manifest(count=3), sample_rate=16_000, segment_duration=0.5)
    with pytest.raises(ConfigError, match=r"3 item\(s\) give 0 per rank on 4 rank\(s\).*; set dataset.drop_last=false, or add data$"):
        build_loader(dataset, batch_size=1, drop_last=True, rank=1, world_size=4)
