"""Log-mel spectrogram images of audio, for trackers: a clip, or an original above its
reconstruction so the two read side by side. Colours come from a small built-in colour ramp
(dark blue -> teal -> yellow), so no plotting package is needed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..metrics.audio import mel_filterbank

# Anchor colours (RGB, 0-255) of the ramp, low to high energy; close to matplotlib's viridis.
_RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)
_GAP = 4  # rows of background between stacked spectrograms


def log_mel(wav: np.ndarray, sample_rate: int, n_fft: int = 1024, hop: int = 256, n_mels: int = 80) -> np.ndarray:
    """[n_mels, frames] log10 mel energies of a mono clip (a multichannel one is averaged)."""
    mono = torch.as_tensor(wav, dtype=torch.float32)
    if mono.ndim == 2:
        mono = mono.mean(0)
    if mono.numel() < n_fft:
        mono = torch.nn.functional.pad(mono, (0, n_fft - mono.numel()))
    spec = torch.stft(mono, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs() ** 2
    mel = mel_filterbank(n_fft, n_mels, sample_rate, drop_empty=False) @ spec
    return torch.log10(mel.clamp_min(1e-10)).numpy()


def spectrogram_image(clips: Sequence[np.ndarray], sample_rate: int, dynamic_range_db: float = 80.0) -> np.ndarray:
    """uint8 [height, width, 3]: the log-mel of each clip, stacked top to bottom (low frequencies
    at the bottom of each), on one colour scale so that loudness compares across them."""
    mels = [log_mel(clip, sample_rate) for clip in clips]
    top = max(float(m.max()) for m in mels)
    width = max(m.shape[1] for m in mels)
    rows = []
    for index, mel in enumerate(mels):
        level = np.clip((mel - top) * 10.0 / dynamic_range_db + 1.0, 0.0, 1.0)[::-1]  # 0 dB at the top
        canvas = np.zeros((mel.shape[0], width))
        canvas[:, : mel.shape[1]] = level
        rows.append(_colour(canvas))
        if index + 1 < len(mels):
            rows.append(np.full((_GAP, width, 3), 255, dtype=np.uint8))
    return np.concatenate(rows, axis=0)


def _colour(level: np.ndarray) -> np.ndarray:
    position = level * (len(_RAMP) - 1)
    low = np.floor(position).astype(int).clip(0, len(_RAMP) - 2)
    fraction = (position - low)[..., None]
    rgb = _RAMP[low] * (1 - fraction) + _RAMP[low + 1] * fraction
    return rgb.round().astype(np.uint8)
