"""What the reference tasks' tests share: the built-in dataset and an XP root of their own."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def env(synth_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """BATON_DATA_DIR at the session's built-in dataset, BATON_XP_DIR under this test's tmp_path."""
    monkeypatch.setenv("BATON_DATA_DIR", str(synth_cache))
    monkeypatch.setenv("BATON_XP_DIR", str(tmp_path / "xps"))
    return tmp_path
