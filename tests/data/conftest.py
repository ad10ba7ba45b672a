"""Fixtures that write real audio files: every data test reads what libsndfile wrote."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.data.audio_files import manifest_line, write_manifest_lines, write_tone


@pytest.fixture
def tone_manifest(tmp_path: Path) -> Callable[..., Path]:
    """Write `count` tones with durations cycling through `durations`, and their manifest."""

    def make(count: int = 8, durations: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0), name: str = "train") -> Path:
        lines = []
        for index in range(count):
            seconds = durations[index % len(durations)]
            label = f"class{index % 2}"
            wav = write_tone(tmp_path / name / f"{index:03d}.wav", seconds, freq=200.0 + 50 * index)
            lines.append(manifest_line(wav, seconds, label=label))
        return write_manifest_lines(tmp_path / f"{name}.jsonl", lines)

    return make
