"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`make test` runs one worker per core) each worker, and every process
    its tests start, computes on one thread: with torch's default of a thread per core, two
    workers on two cores would run four busy threads and each test would slow the other."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        import torch

        torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `starts_first` go to the front (the sort is stable): under pytest-xdist the
    longest one then runs beside the others rather than alone after them."""
    items.sort(key=lambda item: item.get_closest_marker("starts_first") is None)


@pytest.fixture(scope="session")
def synth_cache(tmp_path_factory) -> Path:
    """A data cache (what BATON_DATA_DIR points to) holding the built-in dataset, seed 0."""
    from baton.data import synth

    cache = tmp_path_factory.mktemp("data_cache")
    synth.ensure_synth(cache / "synth", seed=0)
    return cache
