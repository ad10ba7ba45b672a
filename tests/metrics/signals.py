"""Speech-like test signals, synthesised: a voiced tone with a gliding pitch whose loudness rises
and falls four times a second (PESQ and Resemblyzer look for utterances), and white noise at a
chosen SNR."""

from __future__ import annotations

import math

import torch


def voiced(seconds: float, sample_rate: int, f0: float = 140.0, seed: int = 0) -> torch.Tensor:
    """[time] float32: eight harmonics of a pitch gliding around `f0`, in syllable-like bursts."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sample_rate), dtype=torch.float64) / sample_rate
    pitch = f0 * (1 + 0.15 * torch.sin(2 * math.pi * 0.7 * t + float(torch.rand(1, generator=gen)) * 6))
    phase = 2 * math.pi * torch.cumsum(pitch, 0) / sample_rate
    wav = sum(torch.sin(k * phase) / k for k in range(1, 9))
    envelope = torch.sin(2 * math.pi * 2.0 * t).clamp_min(0) ** 0.5
    assert isinstance(wav, torch.Tensor)
    return (0.3 * wav * envelope).float()


def with_noise(reference: torch.Tensor, snr_db: float, seed: int = 1) -> torch.Tensor:
    """`reference` plus white noise `snr_db` below its energy."""
    noise = torch.randn(reference.shape, generator=torch.Generator().manual_seed(seed))
    noise *= reference.norm() / noise.norm() / 10 ** (snr_db / 20)
    return reference + noise
