"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synth_cache(tmp_path_factory) -> Path:
    """A data cache (what BATON_DATA_DIR points to) holding the built-in dataset, seed 0."""
    from baton.data import synth

    cache = tmp_path_factory.mktemp("data_cache")
    synth.ensure_synth(cache / "synth", seed=0)
    return cache
