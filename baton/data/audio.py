"""Audio I/O and the two conversions every dataset needs: sample rate and channel count.

Reading goes through soundfile (libsndfile: wav, flac, ogg), resampling through julius, so
baton needs no torchaudio. Every failure to read a file becomes a `DataError` naming the path,
which is what lets a dataset apply its `on_error` policy without guessing at libsndfile's
exception types.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..errors import DataError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


@dataclass(frozen=True)
class AudioInfo:
    frames: int
    sample_rate: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def audio_info(path: str | Path) -> AudioInfo:
    """Header information of an audio file.

    Raises:
        DataError: the file is missing or not audio libsndfile can parse.
    """
    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError, ValueError) as exc:
        raise DataError(f"cannot read audio file {path}: {_reason(exc)}") from exc
    return AudioInfo(frames=int(info.frames), sample_rate=int(info.samplerate), channels=int(info.channels))


def read_audio(path: str | Path, offset: int = 0, frames: int = -1) -> tuple[torch.Tensor, int]:
    """`frames` frames (all when -1) from frame `offset`, as a float32 tensor [channels, time].

    Fewer frames come back when the file ends first; the caller pads.

    Raises:
        DataError: the file is unreadable, corrupt, or holds no audio at all.
    """
    try:
        with sf.SoundFile(str(path)) as handle:
            sample_rate = handle.samplerate
            if handle.frames == 0:
                raise DataError(f"audio file {path} has no frames (zero-length); remove it from the manifest")
            if offset:
                handle.seek(min(offset, handle.frames))
            data = handle.read(frames, dtype="float32", always_2d=True)
    except DataError:
        raise
    except (RuntimeError, OSError, ValueError) as exc:
        raise DataError(f"cannot read audio file {path}: {_reason(exc)}") from exc
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sample_rate)


def write_wav(path: str | Path, wav: torch.Tensor | np.ndarray, sample_rate: int) -> None:
    """Write [channels, time] (or [time]) float audio in [-1, 1] as 16-bit PCM WAV."""
    data = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    if data.ndim == 1:
        data = data[None]
    sf.write(str(path), np.clip(data.T, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")


def convert_channels(wav: torch.Tensor, channels: int) -> torch.Tensor:
    """Mix down to mono, repeat mono, or keep the first `channels` of [channels, time] audio."""
    have = wav.shape[0]
    if have == channels:
        return wav
    if channels == 1:
        return wav.mean(dim=0, keepdim=True)
    if have == 1:
        return wav.expand(channels, -1).contiguous()
    if have > channels:
        return wav[:channels]
    raise DataError(f"cannot turn {have}-channel audio into {channels} channels; set channels to 1 or {have}")


@functools.lru_cache(maxsize=16)
def _resampler(old_sr: int, new_sr: int):
    # Building the sinc kernel costs more than applying it to a short segment; keep a few.
    import julius

    return julius.ResampleFrac(old_sr, new_sr)


def resample(wav: torch.Tensor, old_sr: int, new_sr: int) -> torch.Tensor:
    """Band-limited resampling along the last axis (julius); a no-op when rates match."""
    if old_sr == new_sr:
        return wav
    return _resampler(int(old_sr), int(new_sr))(wav)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
