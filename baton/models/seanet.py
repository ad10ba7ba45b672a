"""SEANet-style convolutional encoder and decoder, as used by SoundStream and EnCodec.

The encoder turns a waveform [B, C, T] into a latent sequence [B, D, T / hop]; the decoder
maps it back. Both are stacks of strided 1-D convolutions with dilated residual units in
between: the strides trade time resolution for channels, and the dilated units widen the
receptive field cheaply at each resolution.

Lengths. Every convolution here is padded so that a stride-s layer maps a length L that is a
multiple of s to exactly L / s, and a transposed layer maps L to exactly L * s. So for any input
whose length is a multiple of `hop_length`, `decoder(encoder(x))` has the input's length. Other
lengths are the caller's business: `CompressionModel` pads the waveform with zeros on the right
up to a multiple of the hop, and trims the reconstruction back. The encoder raises on a length
that is not a multiple of the hop rather than silently dropping samples.

Padding is with zeros. Causal models pad on the left only (output frame t sees input up to t);
non-causal models split the padding between both sides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm as apply_weight_norm


def _maybe_weight_norm(module: nn.Module, enabled: bool) -> nn.Module:
    # Weight norm decouples the scale of a kernel from its direction, which keeps the
    # adversarial and reconstruction losses of codec training well conditioned (EnCodec, HiFi-GAN).
    return apply_weight_norm(module) if enabled else module


class PaddedConv1d(nn.Module):
    """Conv1d that maps length L (a multiple of `stride`) to exactly L / stride."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        causal: bool = False,
        weight_norm: bool = True,
    ) -> None:
        super().__init__()
        conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation)
        self.conv = _maybe_weight_norm(conv, weight_norm)
        # Total padding (k_eff - stride) gives floor((L + k_eff - s - k_eff) / s) + 1 = L / s.
        total = (kernel_size - 1) * dilation + 1 - stride
        if total < 0:
            raise ValueError(f"kernel_size={kernel_size} must be >= stride={stride}")
        self.padding = (total, 0) if causal else (total - total // 2, total // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.padding))


class TrimmedConvTranspose1d(nn.Module):
    """ConvTranspose1d that maps length L to exactly L * stride by trimming the overhang."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        causal: bool = False,
        weight_norm: bool = True,
    ) -> None:
        super().__init__()
        if kernel_size < stride:
            raise ValueError(f"kernel_size={kernel_size} must be >= stride={stride}")
        conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride=stride)
        self.conv = _maybe_weight_norm(conv, weight_norm)
        # The transposed conv outputs (L - 1) * s + k samples: k - s too many. A causal model
        # trims them all on the right (the future); a non-causal one mirrors PaddedConv1d.
        total = kernel_size - stride
        self.trim = (0, total) if causal else (total - total // 2, total // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        left, right = self.trim
        return y[..., left : y.shape[-1] - right]


class ResidualUnit(nn.Module):
    """ELU -> dilated conv (k, narrowing by `compress`) -> ELU -> 1x1 conv, plus identity skip."""

    def __init__(
        self,
        dim: int,
        kernel_size: int = 3,
        dilation: int = 1,
        compress: int = 2,
        causal: bool = False,
        weight_norm: bool = True,
    ) -> None:
        super().__init__()
        hidden = max(1, dim // compress)
        self.block = nn.Sequential(
            nn.ELU(),
            PaddedConv1d(
                dim, hidden, kernel_size, dilation=dilation, causal=causal, weight_norm=weight_norm
            ),
            nn.ELU(),
            PaddedConv1d(hidden, dim, 1, weight_norm=weight_norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class LSTMBlock(nn.Module):
    """Unidirectional LSTM over time with a skip connection, for long context at the bottleneck.

    Unidirectional so that a causal model stays causal.
    """

    def __init__(self, dim: int, num_layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.permute(2, 0, 1)  # [T, B, D]: nn.LSTM's default layout
        out, _ = self.lstm(seq)
        return x + out.permute(1, 2, 0)


def _residual_stack(
    dim: int,
    n_residual_layers: int,
    residual_kernel_size: int,
    dilation_base: int,
    compress: int,
    causal: bool,
    weight_norm: bool,
) -> list[nn.Module]:
    return [
        ResidualUnit(
            dim,
            kernel_size=residual_kernel_size,
            dilation=dilation_base**j,
            compress=compress,
            causal=causal,
            weight_norm=weight_norm,
        )
        for j in range(n_residual_layers)
    ]


class SEANetEncoder(nn.Module):
    """Waveform [B, channels, T] -> latent [B, dimension, T / hop_length].

    Args:
        channels: audio channels.
        dimension: size of the latent vectors (the quantizer's dimension).
        n_filters: channels after the first conv; doubled at every downsampling.
        ratios: up-sampling ratios in decoder order, as in EnCodec (e.g. [8, 5, 4, 2]). The
            encoder applies them reversed, so the small strides run first at high time
            resolution where there are few channels. hop_length = product(ratios).
        n_residual_layers: residual units before each downsampling, with dilations
            dilation_base ** j.
        kernel_size: kernel of the first conv.
        last_kernel_size: kernel of the projection to `dimension`.
        residual_kernel_size: kernel of the dilated conv in residual units.
        dilation_base: growth of the dilation across the residual units of one stage.
        compress: channel reduction inside residual units.
        causal: pad on the left only, so frame t depends on samples up to t (streamable).
        weight_norm: weight normalisation on every conv.
        lstm: LSTM layers at the bottleneck (0 = none).
    """

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 32,
        ratios: Sequence[int] = (8, 5, 4, 2),
        n_residual_layers: int = 1,
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        residual_kernel_size: int = 3,
        dilation_base: int = 2,
        compress: int = 2,
        causal: bool = False,
        weight_norm: bool = True,
        lstm: int = 0,
    ) -> None:
        super().__init__()
        self.ratios = list(ratios)
        self.hop_length = math.prod(self.ratios)
        stack: dict[str, Any] = dict(
            n_residual_layers=n_residual_layers,
            residual_kernel_size=residual_kernel_size,
            dilation_base=dilation_base,
            compress=compress,
            causal=causal,
            weight_norm=weight_norm,
        )
        layers: list[nn.Module] = [
            PaddedConv1d(channels, n_filters, kernel_size, causal=causal, weight_norm=weight_norm)
        ]
        mult = 1
        for ratio in reversed(self.ratios):
            dim = mult * n_filters
            layers += _residual_stack(dim, **stack)
            layers += [
                nn.ELU(),
                PaddedConv1d(
                    dim, 2 * dim, 2 * ratio, stride=ratio, causal=causal, weight_norm=weight_norm
                ),
            ]
            mult *= 2
        if lstm:
            layers.append(LSTMBlock(mult * n_filters, lstm))
        layers += [
            nn.ELU(),
            PaddedConv1d(
                mult * n_filters,
                dimension,
                last_kernel_size,
                causal=causal,
                weight_norm=weight_norm,
            ),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.hop_length:
            raise ValueError(
                f"input length {x.shape[-1]} is not a multiple of hop_length={self.hop_length}; "
                "pad it first (CompressionModel does)"
            )
        return self.model(x)


class SEANetDecoder(nn.Module):
    """Latent [B, dimension, F] -> waveform [B, channels, F * hop_length].

    Mirrors `SEANetEncoder`; takes the same arguments (ratios in decoder order), so building
    both from one mapping gives matching shapes. `final_activation` (e.g. "Tanh") bounds the
    output; None leaves it linear, as EnCodec does.
    """

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 32,
        ratios: Sequence[int] = (8, 5, 4, 2),
        n_residual_layers: int = 1,
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        residual_kernel_size: int = 3,
        dilation_base: int = 2,
        compress: int = 2,
        causal: bool = False,
        weight_norm: bool = True,
        lstm: int = 0,
        final_activation: str | None = None,
    ) -> None:
        super().__init__()
        self.ratios = list(ratios)
        self.hop_length = math.prod(self.ratios)
        stack: dict[str, Any] = dict(
            n_residual_layers=n_residual_layers,
            residual_kernel_size=residual_kernel_size,
            dilation_base=dilation_base,
            compress=compress,
            causal=causal,
            weight_norm=weight_norm,
        )
        mult = 2 ** len(self.ratios)
        layers: list[nn.Module] = [
            PaddedConv1d(
                dimension, mult * n_filters, kernel_size, causal=causal, weight_norm=weight_norm
            )
        ]
        if lstm:
            layers.append(LSTMBlock(mult * n_filters, lstm))
        for ratio in self.ratios:
            dim = mult * n_filters
            layers += [
                nn.ELU(),
                TrimmedConvTranspose1d(
                    dim, dim // 2, 2 * ratio, ratio, causal=causal, weight_norm=weight_norm
                ),
            ]
            layers += _residual_stack(dim // 2, **stack)
            mult //= 2
        layers += [
            nn.ELU(),
            PaddedConv1d(
                n_filters, channels, last_kernel_size, causal=causal, weight_norm=weight_norm
            ),
        ]
        if final_activation is not None:
            layers.append(getattr(nn, final_activation)())
        self.model = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z)
