"""Audio metrics that double as training losses: SI-SNR, multi-resolution STFT, multi-scale mel.

All of them are differentiable, run on the device of their inputs, and accept `lengths` so
that the padding `collate_audio` adds never counts as signal. With `reduction="none"` they
return one value per item; to average across batches and ranks, hand the Averager the batch
mean with the batch size as its count (`averager.update({"si_snr": v.mean()}, count=len(v))`),
so a short last batch weighs what it holds.

Shapes: waveforms are [batch, channels, time] or [batch, time].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

Reduction = Literal["mean", "none"]


def si_snr(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    lengths: torch.Tensor | None = None,
    *,
    eps: float = 1e-8,
    reduction: Reduction = "none",
) -> torch.Tensor:
    """Scale-invariant signal-to-noise ratio in dB (higher is better), per item by default.

    Both signals are made zero-mean over their valid frames; the estimate is projected on the
    reference, and the ratio of projection to residual energy is taken per channel, then
    averaged over channels. Use `-si_snr(...).mean()` as a loss.
    """
    est, ref = _as_bct(estimate), _as_bct(reference)
    mask = _sample_mask(lengths, ref)
    count = mask.sum(-1, keepdim=True).clamp_min(1)
    est = est * mask
    ref = ref * mask
    est = (est - est.sum(-1, keepdim=True) / count) * mask
    ref = (ref - ref.sum(-1, keepdim=True) / count) * mask
    scale = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * ref
    residual = est - target
    ratio = target.pow(2).sum(-1) / (residual.pow(2).sum(-1) + eps)
    values = (10 * torch.log10(ratio + eps)).mean(dim=1)
    return _reduce(values, reduction)


def mel_filterbank(
    n_fft: int,
    n_mels: int,
    sample_rate: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    *,
    drop_empty: bool = True,
) -> torch.Tensor:
    """Triangular filters on the HTK mel scale, [n_mels, n_fft // 2 + 1] (no area normalisation).

    With small FFTs the lowest filters can fall between two bins and be all zero; those rows are
    dropped when `drop_empty`, so a loss never carries constant, gradient-free channels.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mels = torch.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2, dtype=torch.float64)
    edges = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None] - lower) / (center - lower)
    falling = (upper - freqs[None]) / (upper - center)
    bank = torch.clamp(torch.minimum(rising, falling), min=0.0)
    if drop_empty:
        bank = bank[bank.sum(dim=1) > 0]
    return bank.float()


def _hz_to_mel(freq: float) -> float:
    return 2595.0 * math.log10(1.0 + freq / 700.0)


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1, averaged over several STFT resolutions.

    Several resolutions stop a model from trading time precision for frequency precision
    (Yamamoto et al., Parallel WaveGAN). Defaults suit 16 kHz audio.
    """

    def __init__(
        self,
        fft_sizes: Sequence[int] = (512, 1024, 2048),
        hop_sizes: Sequence[int] = (50, 120, 240),
        win_lengths: Sequence[int] = (240, 600, 1200),
        eps: float = 1e-7,
    ) -> None:
        super().__init__()
        if not len(fft_sizes) == len(hop_sizes) == len(win_lengths):
            raise ValueError("fft_sizes, hop_sizes and win_lengths need the same length")
        self.resolutions = list(zip(fft_sizes, hop_sizes, win_lengths, strict=True))
        self.eps = eps
        for n_fft, _, win in self.resolutions:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(win), persistent=False)

    def forward(
        self,
        estimate: torch.Tensor,
        reference: torch.Tensor,
        lengths: torch.Tensor | None = None,
        reduction: Reduction = "mean",
    ) -> torch.Tensor:
        est, ref = _masked_pair(estimate, reference, lengths)
        total = est.new_zeros(est.shape[0])
        for n_fft, hop, _ in self.resolutions:
            window = getattr(self, f"window_{n_fft}").to(est)
            est_mag = _magnitude(est, n_fft, hop, window, self.eps)
            ref_mag = _magnitude(ref, n_fft, hop, window, self.eps)
            frames = _frame_mask(lengths, ref, hop, ref_mag.shape[-1])  # [B, 1, 1, F]
            diff = (ref_mag - est_mag) * frames
            convergence = diff.pow(2).sum((1, 2, 3)).sqrt() / ((ref_mag * frames).pow(2).sum((1, 2, 3)).sqrt() + self.eps)
            log_l1 = _masked_mean((ref_mag.log() - est_mag.log()).abs(), frames)
            total = total + convergence + log_l1
        return _reduce(total / len(self.resolutions), reduction)


class MelDistance(nn.Module):
    """Multi-scale log-mel distance: L1 (+ optional MSE) between log-mel spectrograms.

    Used both as the reconstruction loss of the compression task and as its evaluation
    metric (lower is better). Scales are FFT sizes, each with hop n_fft // 4 (AudioCraft's
    MultiScaleMelSpectrogramLoss uses the same recipe).
    """

    def __init__(
        self,
        sample_rate: int,
        scales: Sequence[int] = (256, 512, 1024, 2048),
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float | None = None,
        mse_weight: float = 0.0,
        floor: float = 1e-5,
    ) -> None:
        super().__init__()
        self.scales = list(scales)
        self.mse_weight = mse_weight
        self.floor = floor
        for n_fft in self.scales:
            bank = mel_filterbank(n_fft, n_mels, sample_rate, f_min, f_max)
            self.register_buffer(f"mel_{n_fft}", bank, persistent=False)
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def log_mel(self, wav: torch.Tensor, n_fft: int) -> torch.Tensor:
        """[B, C, mels, frames] log-mel magnitude at one scale."""
        window = getattr(self, f"window_{n_fft}").to(wav)
        bank = getattr(self, f"mel_{n_fft}").to(wav)
        mag = _magnitude(_as_bct(wav), n_fft, n_fft // 4, window, eps=0.0)
        return torch.matmul(bank, mag).clamp_min(self.floor).log()

    def forward(
        self,
        estimate: torch.Tensor,
        reference: torch.Tensor,
        lengths: torch.Tensor | None = None,
        reduction: Reduction = "mean",
    ) -> torch.Tensor:
        est, ref = _masked_pair(estimate, reference, lengths)
        total = est.new_zeros(est.shape[0])
        for n_fft in self.scales:
            diff = self.log_mel(est, n_fft) - self.log_mel(ref, n_fft)
            frames = _frame_mask(lengths, ref, n_fft // 4, diff.shape[-1])
            total = total + _masked_mean(diff.abs(), frames)
            if self.mse_weight:
                total = total + self.mse_weight * _masked_mean(diff.pow(2), frames)
        return _reduce(total / len(self.scales), reduction)


def _masked_pair(
    estimate: torch.Tensor, reference: torch.Tensor, lengths: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both signals as [B, C, T] with their padding zeroed, so it never counts as signal."""
    est, ref = _as_bct(estimate), _as_bct(reference)
    mask = _sample_mask(lengths, ref)
    return est * mask, ref * mask


def _as_bct(wav: torch.Tensor) -> torch.Tensor:
    if wav.dtype in (torch.float16, torch.bfloat16):
        # Model outputs under autocast: FFTs and log-ratios want float32 (and stft rejects bf16).
        wav = wav.float()
    if wav.dim() == 2:
        return wav[:, None]
    if wav.dim() != 3:
        raise ValueError(f"expected [batch, time] or [batch, channels, time], got shape {tuple(wav.shape)}")
    return wav


def _sample_mask(lengths: torch.Tensor | None, wav: torch.Tensor) -> torch.Tensor:
    """[B, 1, T] float mask of valid samples (all ones without lengths)."""
    if lengths is None:
        return wav.new_ones(wav.shape[0], 1, wav.shape[-1])
    steps = torch.arange(wav.shape[-1], device=wav.device)
    return (steps[None] < lengths.to(wav.device)[:, None]).to(wav.dtype)[:, None]


def _frame_mask(lengths: torch.Tensor | None, wav: torch.Tensor, hop: int, frames: int) -> torch.Tensor:
    """[B, 1, 1, frames] mask of STFT frames (centred) whose centre lies on valid samples."""
    if lengths is None:
        return wav.new_ones(wav.shape[0], 1, 1, frames)
    centres = torch.arange(frames, device=wav.device) * hop
    valid = centres[None] < lengths.to(wav.device)[:, None].clamp_min(1)
    return valid.to(wav.dtype)[:, None, None]


def _magnitude(wav: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor, eps: float) -> torch.Tensor:
    """[B, C, freqs, frames] STFT magnitude; sqrt(re^2 + im^2 + eps) keeps the gradient finite
    where the spectrum is exactly zero (e.g. in padding)."""
    batch, channels, time = wav.shape
    flat = wav.reshape(batch * channels, time)
    if time < n_fft // 2 + 1:
        # torch.stft's reflect padding needs more samples than half a window.
        flat = nn.functional.pad(flat, (0, n_fft // 2 + 1 - time))
    spec = torch.stft(flat, n_fft, hop_length=hop, win_length=window.shape[0], window=window,
                      center=True, return_complex=True)
    power = torch.view_as_real(spec).pow(2).sum(-1)
    mag = (power + eps).sqrt() if eps else power.clamp_min(1e-20).sqrt()
    return mag.reshape(batch, channels, *mag.shape[-2:])


def _masked_mean(values: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Per-item mean over channels, freqs and valid frames: [B]."""
    weights = frames.expand_as(values)
    return (values * weights).sum((1, 2, 3)) / weights.sum((1, 2, 3)).clamp_min(1)


def _reduce(values: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean' or 'none', got '{reduction}'")
