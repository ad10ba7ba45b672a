"""Built-in evaluators: metrics computed on the valid set beside validation, reported under the
evaluator's name in the valid stage (so `best_metric.name` can pick one).

    mel_distance   multi-scale log-mel L1 between `real` and `fake` (lower is better)
    sisnr          SI-SNR in dB between `real` and `fake` (higher is better)
    audio_metric   any metric of baton.metrics by name (`metric: pesq`; visqol, stoi, dnsmos, ...,
                   docs/metrics.md) of `fake` against `real`, every item of the batch scored

A user's own: subclass `Evaluator`, take options as keyword arguments, return a dict of
metrics for one batch's state (averaged over items by the solver), and register it with
`@register_evaluator("name")`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..metrics.audio import MelDistance, si_snr
from ..metrics.item_metrics import build_metric
from .components import Evaluator, State
from .registry import register_evaluator


class PairEvaluator(Evaluator):
    def __init__(self, real: str, fake: str) -> None:
        self.real, self.fake = real, fake

    def reads(self) -> list[str]:
        return [self.real, self.fake]

    def pair(self, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        where = f"evaluator '{self.name}'"
        return state.read(self.real, where).float(), state.read(self.fake, where).float()


@register_evaluator("mel_distance")
class MelDistanceEvaluator(PairEvaluator):
    def __init__(self, real: str, fake: str, scales: Sequence[int] = (256, 512, 1024), n_mels: int = 64) -> None:
        super().__init__(real, fake)
        self.scales, self.n_mels = list(scales), int(n_mels)
        self.module: MelDistance | None = None

    def __call__(self, state: State, sample_rate: int) -> dict[str, torch.Tensor]:
        real, fake = self.pair(state)
        if self.module is None:
            self.module = MelDistance(sample_rate, self.scales, self.n_mels)
        lengths = state.get("lengths") if fake.shape[-1] == state["wav"].shape[-1] else None
        return {self.name: self.module.to(fake.device)(fake, real, lengths)}


@register_evaluator("sisnr")
class SISNREvaluator(PairEvaluator):
    def __call__(self, state: State, sample_rate: int) -> dict[str, torch.Tensor]:
        real, fake = self.pair(state)
        lengths = state.get("lengths") if fake.shape[-1] == state["wav"].shape[-1] else None
        return {self.name: si_snr(fake, real, lengths).mean()}


@register_evaluator("audio_metric")
class AudioMetricEvaluator(PairEvaluator):
    """A metric of the registry (baton.metrics.item_metrics) as an evaluator: its mean over the
    batch's items, which the solver weights by the batch size, so each item counts once. The
    costly ones (ViSQOL, DNSMOS) score every valid item: bound them with `every` or
    `dataset.valid.num_samples`."""

    def __init__(self, real: str, fake: str, metric: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(real, fake)
        self.metric = build_metric(metric, options, where="metric")

    def __call__(self, state: State, sample_rate: int) -> dict[str, torch.Tensor]:
        real, fake = self.pair(state)
        lengths = state.get("lengths") if fake.shape[-1] == state["wav"].shape[-1] else None
        return {self.name: self.metric(fake, real, lengths, sample_rate).mean().float()}
