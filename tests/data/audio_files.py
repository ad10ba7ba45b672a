"""Writers of real audio files and manifests: every data test reads what libsndfile wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf


def write_tone(path: Path, seconds: float, *, sample_rate: int = 16_000, channels: int = 1,
               freq: float = 440.0, subtype: str = "PCM_16") -> Path:
    """A sine tone; each channel at a different level so channel handling is visible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    tone = 0.5 * np.sin(2 * np.pi * freq * t)
    data = np.stack([tone * (1.0 - 0.3 * c) for c in range(channels)], axis=1)
    sf.write(str(path), data, sample_rate, subtype=subtype)
    return path


def write_corrupt(path: Path) -> Path:
    """A file named .wav that is not audio (what a truncated download looks like)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF\x00\x00\x00\x00this is not a wave file" * 4)
    return path


def write_manifest_lines(path: Path, lines: list[dict | str]) -> Path:
    """A manifest written line by line (strings are written verbatim, to make bad lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def manifest_line(path: Path, seconds: float, sample_rate: int = 16_000, channels: int = 1,
                  **extra) -> dict:
    return {"path": str(path), "duration": seconds, "sample_rate": sample_rate, "channels": channels, **extra}
