"""Built-in conditioners: each turns one attribute of a batch of items into embeddings
[batch, steps, dim] and a mask [batch, steps] (False where the attribute is absent).

    lut        categorical -> a learned embedding per class (one step)
    text_char  text -> character embeddings through a small transformer layer (one step per
               character, up to `max_length`); the vocabulary is printable ASCII, built in:
               nothing is downloaded
    wav_mel    wav -> a summary of the clip's log-mel spectrogram (mean and standard deviation
               over time of each band), projected (one step)

Subclass `Conditioner` and register it with `@register_conditioner("name")` for your own.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..metrics.audio import mel_filterbank
from .attributes import WavCondition
from .registry import register_conditioner

Embedded = tuple[torch.Tensor, torch.Tensor]  # [batch, steps, dim], mask [batch, steps]


class Conditioner(nn.Module):
    """Reads attributes of kind `kind` ('text', 'categorical' or 'wav'); `dim` is the model's."""

    kind: str = ""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, values: Sequence[Any]) -> Embedded:
        """Embeddings and mask for one value per item (None: absent)."""
        raise NotImplementedError


@register_conditioner("lut")
class LUTConditioner(Conditioner):
    kind = "categorical"

    def __init__(self, dim: int, classes: Sequence[str]) -> None:
        super().__init__(dim)
        self.classes = [str(c) for c in classes]
        if len(set(self.classes)) != len(self.classes) or not self.classes:
            raise ValueError(f"classes must be distinct and not empty, got {self.classes}")
        self.index = {c: i + 1 for i, c in enumerate(self.classes)}  # 0: absent
        self.embed = nn.Embedding(len(self.classes) + 1, dim)

    def forward(self, values: Sequence[str | None]) -> Embedded:
        ids = []
        for value in values:
            if value is not None and str(value) not in self.index:
                raise ValueError(f"unknown class '{value}'; this lookup table knows {', '.join(self.classes)}")
            ids.append(0 if value is None else self.index[str(value)])
        tokens = torch.tensor(ids, device=self.embed.weight.device)[:, None]
        mask = tokens != 0
        return self.embed(tokens) * mask[..., None], mask


@register_conditioner("text_char")
class CharTextConditioner(Conditioner):
    kind = "text"
    VOCAB = string.printable[:95]  # digits, letters, punctuation, space: index + 1, 0 is padding

    def __init__(self, dim: int, max_length: int = 64, heads: int = 2) -> None:
        super().__init__(dim)
        self.max_length = max_length
        self.chars = {c: i + 1 for i, c in enumerate(self.VOCAB)}
        self.embed = nn.Embedding(len(self.VOCAB) + 1, dim, padding_idx=0)
        self.position = nn.Embedding(max_length, dim)
        self.encoder = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True)

    def forward(self, values: Sequence[str | None]) -> Embedded:
        device = self.embed.weight.device
        texts = ["" if v is None else str(v)[: self.max_length] for v in values]
        steps = max(1, max(len(t) for t in texts))
        tokens = torch.zeros(len(texts), steps, dtype=torch.long)
        for row, text in enumerate(texts):
            tokens[row, : len(text)] = torch.tensor([self.chars.get(c, self.chars["?"]) for c in text], dtype=torch.long)
        tokens = tokens.to(device)
        mask = tokens != 0
        x = self.embed(tokens) + self.position(torch.arange(steps, device=device))[None]
        empty = ~mask.any(dim=1)
        # A row with no characters attends to its padding rather than to nothing (NaN).
        attend = mask | empty[:, None]
        x = self.encoder(x, src_key_padding_mask=~attend)
        return x * mask[..., None], mask


@register_conditioner("wav_mel")
class MelSummaryConditioner(Conditioner):
    kind = "wav"

    def __init__(self, dim: int, sample_rate: int, n_mels: int = 32, n_fft: int = 512) -> None:
        super().__init__(dim)
        self.sample_rate, self.n_fft = sample_rate, n_fft
        self.bank: torch.Tensor
        self.window: torch.Tensor
        self.register_buffer("bank", mel_filterbank(n_fft, n_mels, sample_rate, drop_empty=False), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.project = nn.Linear(2 * n_mels, dim)

    def summary(self, condition: WavCondition) -> torch.Tensor:
        if condition.sample_rate != self.sample_rate:
            raise ValueError(f"reference clip at {condition.sample_rate} Hz; this conditioner takes {self.sample_rate} Hz")
        wav = condition.wav[..., : condition.length].float().mean(0).to(self.window.device)
        if wav.shape[-1] < self.n_fft:
            wav = nn.functional.pad(wav, (0, self.n_fft - wav.shape[-1]))
        spec = torch.stft(wav, self.n_fft, self.n_fft // 4, window=self.window, return_complex=True).abs()
        mel = torch.matmul(self.bank, spec).clamp_min(1e-5).log()
        return torch.cat([mel.mean(-1), mel.std(-1, unbiased=False)])

    def forward(self, values: Sequence[WavCondition | None]) -> Embedded:
        device = self.project.weight.device
        zeros = torch.zeros(self.project.in_features, device=device)
        summaries = torch.stack([zeros if v is None else self.summary(v) for v in values])
        mask = torch.tensor([v is not None for v in values], device=device)[:, None]
        return self.project(summaries)[:, None] * mask[..., None], mask
