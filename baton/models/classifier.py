"""A small log-mel CNN audio classifier, sized for the built-in synthetic dataset on a CPU.

Variable lengths are first class: every stage keeps track of how many frames are real, zeroes
the rest and pools over real frames only, so an item gives the same logits and embedding alone
or zero-padded inside a batch (in eval mode; BatchNorm statistics in train mode still see the
padding). That lets validation and evaluation run on whole files instead of crops.

`AudioClassifier.embed` is the pooled embedding before the head. Later issues use it the way
FID uses Inception's pool features: a Fréchet distance between the embedding statistics of
real and generated audio. Such distances are only comparable when computed with the same
classifier checkpoint, in eval mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..metrics.audio import mel_filterbank


class LogMel(nn.Module):
    """Log-mel power spectrogram, [batch, n_mels, frames], in pure torch (no torchaudio).

    Frames are centred at multiples of `hop_length` with *zero* padding (not torch.stft's
    reflect padding, whose content at the end depends on how much batch padding follows), so
    a frame's value depends only on the item's real samples. Frames whose centre lies past
    `lengths` are set to zero after normalisation.

    With `normalize`, each item's log-mel is shifted and scaled by one mean and one standard
    deviation over all its bands and real frames: this removes the recording gain (the synth
    data spans -24..-1 dB peak) while keeping the spectral tilt that tells noise colours apart,
    which per-band normalisation would erase.
    """

    bank: torch.Tensor
    window: torch.Tensor

    def __init__(
        self,
        sample_rate: int = 16_000,
        n_fft: int = 512,
        hop_length: int = 160,
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float | None = None,
        floor: float = 1e-6,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.floor = floor
        self.normalize = normalize
        # drop_empty=False keeps the promised n_mels rows; an empty low filter is just constant.
        bank = mel_filterbank(n_fft, n_mels, sample_rate, f_min, f_max, drop_empty=False)
        self.register_buffer("bank", bank, persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Real frames per item: those centred on a real sample (at least one)."""
        return torch.div(lengths + self.hop_length - 1, self.hop_length, rounding_mode="floor").clamp_min(1)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        # Features in float32 even under autocast: stft rejects bf16, and a half-precision
        # filterbank matmul would flush quiet bands to the floor before the log.
        with torch.autocast(wav.device.type, enabled=False):
            return self._features(_as_batch_time(wav), lengths)

    def _features(self, wav: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        lengths = _full_lengths(wav, lengths)
        steps = torch.arange(wav.shape[-1], device=wav.device)
        wav = wav * (steps[None] < lengths[:, None])
        half = self.n_fft // 2
        padded = nn.functional.pad(wav, (half, half))
        spec = torch.stft(padded, self.n_fft, hop_length=self.hop_length, window=self.window.to(wav),
                          center=False, return_complex=True)
        power = torch.view_as_real(spec).pow(2).sum(-1)
        mel = torch.matmul(self.bank.to(wav), power).clamp_min(self.floor).log()
        mask = self.frame_mask(lengths, mel)
        if self.normalize:
            count = mask.sum((1, 2), keepdim=True) * mel.shape[1]
            mean = (mel * mask).sum((1, 2), keepdim=True) / count
            var = ((mel - mean).pow(2) * mask).sum((1, 2), keepdim=True) / count
            mel = (mel - mean) / (var + 1e-5).sqrt()
        return mel * mask

    def frame_mask(self, lengths: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """[batch, 1, frames] float mask of real frames."""
        steps = torch.arange(mel.shape[-1], device=mel.device)
        valid = steps[None] < self.frame_lengths(lengths.to(mel.device))[:, None]
        return valid.to(mel.dtype)[:, None]


class AudioClassifier(nn.Module):
    """LogMel -> 2-D CNN over (mel, time) -> masked mean+max pooling over time -> linear head.

    A 2-D CNN rather than a 1-D one over mel channels: its filters are shared across
    frequency, so a harmonic stack or a sweep looks the same at any pitch, which matters with
    only 48 training files per class. Each block halves both axes (max pooling, ceil mode),
    and the frame mask is halved with it.

    Args:
        channels: output channels of each conv block; the model's width and depth.
        embedding_dim: size of `embed`'s output (the layer before the head).
        dropout: on the embedding, before the head; training only.
    """

    def __init__(
        self,
        num_classes: int,
        sample_rate: int = 16_000,
        n_mels: int = 64,
        n_fft: int = 512,
        hop_length: int = 160,
        channels: Sequence[int] = (16, 32, 64, 128),
        embedding_dim: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if not channels:
            raise ValueError("channels needs at least one conv block")
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.features = LogMel(sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
        widths = [1, *channels]
        self.blocks = nn.ModuleList(_ConvBlock(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        previous = widths[-1]
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.project = nn.Sequential(nn.Linear(2 * previous, embedding_dim), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(embedding_dim, num_classes))

    def embed(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """[batch, embedding_dim] pooled embedding, the input of the head.

        Use it in eval mode for Fréchet distances: in train mode BatchNorm uses batch
        statistics, so an item's embedding would depend on its batch mates.
        """
        lengths = _full_lengths(_as_batch_time(wav), lengths)
        x = self.features(wav, lengths)[:, None]  # [B, 1, mels, frames]
        frames = self.features.frame_lengths(lengths)
        for index, block in enumerate(self.blocks):
            if index:
                x = self.pool(x)
                frames = torch.div(frames + 1, 2, rounding_mode="floor")
            x = block(x, frames)
        x = x.mean(2)  # over frequency: [B, C, frames]
        mean = x.sum(-1) / frames[:, None].to(x.dtype)
        pooled = torch.cat([mean, x.amax(-1)], dim=1)  # padding is 0 <= any real value
        return self.project(pooled)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """[batch, num_classes] logits for wav [batch, time] or [batch, 1, time], where
        `lengths` (valid samples per item, e.g. `AudioBatch.lengths`) excludes the padding."""
        return self.head(self.embed(wav, lengths))


def _as_batch_time(wav: torch.Tensor) -> torch.Tensor:
    if wav.dim() == 3 and wav.shape[1] == 1:
        wav = wav[:, 0]
    if wav.dim() != 2:
        raise ValueError(f"expected mono audio [batch, time] or [batch, 1, time], got shape {tuple(wav.shape)}")
    return wav.float() if wav.dtype in (torch.float16, torch.bfloat16) else wav


class _ConvBlock(nn.Module):
    """Two 3x3 conv + BatchNorm + ReLU layers, each followed by zeroing the padded frames:
    BatchNorm's shift turns zero padding into non-zero values that the next convolution would
    smear into real frames, and the max pool relies on padding being 0 <= any ReLU output."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, out_channels, 3, padding=1, bias=False),
                          nn.BatchNorm2d(out_channels), nn.ReLU())
            for width in (in_channels, out_channels)
        )

    def forward(self, x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = _mask_time(layer(x), frames)
        return x


def _full_lengths(wav: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """`lengths` on wav's device; None means no padding. Treating both alike keeps an unpadded
    item's frame count (hence its output) the same whether or not lengths are passed."""
    if lengths is None:
        return torch.full((wav.shape[0],), wav.shape[-1], dtype=torch.long, device=wav.device)
    return lengths.to(wav.device)


def _mask_time(x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    steps = torch.arange(x.shape[-1], device=x.device)
    return x * (steps[None] < frames[:, None]).to(x.dtype)[:, None, None]
