"""HiFi-GAN's discriminators, at any width: multi-period (2-D convs over the waveform folded
by a period, which sees periodic structure) and multi-scale (1-D convs over the waveform and
its average-pooled versions, which sees structure at several time scales).

Both return `(logits, features)`: one logit tensor per sub-discriminator, and each one's list
of feature maps, which the `feature_matching` loss compares between real and fake audio.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

LRELU_SLOPE = 0.1
Output = tuple[list[torch.Tensor], list[list[torch.Tensor]]]


def conv_stack(convs: nn.ModuleList, post: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Convolutions with leaky ReLUs, then the logit layer: (flat logits, every layer's output)."""
    features = []
    for conv in convs:
        x = nn.functional.leaky_relu(conv(x), LRELU_SLOPE)
        features.append(x)
    x = post(x)
    features.append(x)
    return x.flatten(1), features


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, channels: Sequence[int] = (32, 128, 512, 1024), kernel_size: int = 5, stride: int = 3) -> None:
        super().__init__()
        self.period = period
        widths = [1, *channels]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(c_in, c_out, (kernel_size, 1), (stride if i < len(channels) - 1 else 1, 1), padding=(kernel_size // 2, 0)))
            for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:], strict=True))
        )
        self.post = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        batch, channels, time = wav.shape
        if time % self.period:
            wav = nn.functional.pad(wav, (0, self.period - time % self.period), mode="reflect")
        return conv_stack(self.convs, self.post, wav.view(batch, channels, -1, self.period))


class ScaleDiscriminator(nn.Module):
    def __init__(self, channels: Sequence[int] = (128, 256, 512, 1024), groups: int = 4) -> None:
        super().__init__()
        widths = [1, *channels]
        layers = [weight_norm(nn.Conv1d(1, widths[1], 15, padding=7))]
        for c_in, c_out in zip(widths[1:-1], widths[2:], strict=True):
            layers.append(weight_norm(nn.Conv1d(c_in, c_out, 41, stride=4, groups=min(groups, c_in), padding=20)))
        layers.append(weight_norm(nn.Conv1d(widths[-1], widths[-1], 5, padding=2)))
        self.convs = nn.ModuleList(layers)
        self.post = weight_norm(nn.Conv1d(widths[-1], 1, 3, padding=1))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return conv_stack(self.convs, self.post, wav)


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), channels: Sequence[int] = (32, 128, 512, 1024)) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(int(p), channels) for p in periods)

    def forward(self, wav: torch.Tensor) -> Output:
        outputs = [d(wav) for d in self.discriminators]
        return [o[0] for o in outputs], [o[1] for o in outputs]


class MultiScaleDiscriminator(nn.Module):
    """Sub-discriminator k sees the waveform average-pooled k times by 2."""

    def __init__(self, scales: int = 3, channels: Sequence[int] = (128, 256, 512, 1024)) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(ScaleDiscriminator(channels) for _ in range(scales))
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, wav: torch.Tensor) -> Output:
        logits, features = [], []
        x = wav
        for i, disc in enumerate(self.discriminators):
            if i:
                x = self.pool(x)
            out, maps = disc(x)
            logits.append(out)
            features.append(maps)
        return logits, features
