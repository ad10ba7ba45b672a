"""A HiFi-GAN-like vocoder: log-mel frames in, waveform out.

Transposed convolutions upsample the frames by `prod(upsample_rates)` (the mel's hop length);
after each, a multi-receptive-field block (residual dilated convolutions with several kernel
sizes, averaged) refines the signal. Weight normalisation on every convolution, as in HiFi-GAN
(Kong et al., 2020), keeps adversarial training stable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

LRELU_SLOPE = 0.1


def upsampler(channels: int, out_channels: int, rate: int) -> nn.ConvTranspose1d:
    """A transposed conv giving exactly `rate` times as many frames (kernel 2 * rate)."""
    return nn.ConvTranspose1d(
        channels, out_channels, 2 * rate, stride=rate, padding=(rate + 1) // 2, output_padding=rate % 2,
    )


class ResidualStack(nn.Module):
    """Dilated convolutions with residual connections, at one kernel size."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=d * (kernel_size - 1) // 2))
            for d in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = x + conv(nn.functional.leaky_relu(x, LRELU_SLOPE))
        return x


class MelVocoder(nn.Module):
    """[batch, n_mels, frames] -> [batch, 1, frames * prod(upsample_rates)], in [-1, 1]."""

    def __init__(
        self,
        n_mels: int = 80,
        channels: int = 256,
        upsample_rates: Sequence[int] = (8, 8, 4),
        resblock_kernels: Sequence[int] = (3, 7, 11),
        resblock_dilations: Sequence[int] = (1, 3, 5),
    ) -> None:
        super().__init__()
        self.hop_length = 1
        for rate in upsample_rates:
            self.hop_length *= int(rate)
        self.pre = weight_norm(nn.Conv1d(n_mels, channels, 7, padding=3))
        self.ups = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for i, rate in enumerate(upsample_rates):
            inner, outer = channels // 2**i, channels // 2 ** (i + 1)
            self.ups.append(weight_norm(upsampler(inner, outer, int(rate))))
            self.blocks.append(nn.ModuleList(ResidualStack(outer, k, resblock_dilations) for k in resblock_kernels))
        self.post = weight_norm(nn.Conv1d(channels // 2 ** len(upsample_rates), 1, 7, padding=3))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.pre(mel)
        for up, stacks in zip(self.ups, self.blocks, strict=True):
            x = up(nn.functional.leaky_relu(x, LRELU_SLOPE))
            outputs = [stack(x) for stack in stacks]  # type: ignore[attr-defined]
            x = torch.stack(outputs).mean(0)
        return torch.tanh(self.post(nn.functional.leaky_relu(x)))
