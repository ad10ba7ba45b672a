"""`AudioMetricStats`: the metrics of baton.metrics (SI-SNR, ViSQOL, PESQ, STOI, DNSMOS, speaker
similarity, docs/metrics.md) in the shape of SpeechBrain's `MetricStats`: `append` a batch in
`compute_objectives`, `summarize` in `on_stage_end`.

    def on_stage_start(self, stage, epoch=None):
        if stage != sb.Stage.TRAIN:
            self.quality = sb.AudioMetricStats(["pesq", "stoi"], sample_rate=16000)

    def compute_objectives(self, predictions, batch, stage):
        clean, lens = batch.clean_sig
        if stage != sb.Stage.TRAIN:
            self.quality.append(predictions, clean, lens)
        ...

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage != sb.Stage.TRAIN:
            stats = {"loss": stage_loss, **self.quality.summarize()}

Lengths are SpeechBrain's: relative (the fraction of the padded batch each item fills). The
means are over every item of every rank once (the evaluation loaders deal each item to one
rank), so `summarize` is collective: every rank calls it, as `on_stage_end` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..metrics.suite import MetricSuite


class AudioMetricStats:
    """Per-item audio metrics of one stage, averaged over all items and ranks.

    Args:
        metrics: metric names of the registry (`baton.metrics.item_metrics`).
        sample_rate: the rate of what `append` receives.
        max_items: how many items, over all ranks, the costly metrics score (None: all).
        options: per metric name, options of its constructor.
    """

    def __init__(self, metrics: Sequence[str], sample_rate: int, *, max_items: int | None = None,
                 options: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.sample_rate = int(sample_rate)
        self.suite = MetricSuite(metrics, max_items=max_items, options=options, where="AudioMetricStats")

    def append(self, estimate: torch.Tensor, reference: torch.Tensor, lengths: torch.Tensor | None = None) -> None:
        """Score a batch ([batch, time] or [batch, channels, time]); `lengths` relative, as
        SpeechBrain's `wav_lens`, or None when nothing is padded."""
        samples = None
        if lengths is not None:
            samples = torch.round(lengths.float() * estimate.shape[-1]).long().clamp(1, estimate.shape[-1])
        self.suite.update(estimate.detach(), reference.detach(), samples, self.sample_rate)

    def summarize(self, field: str | None = None) -> Any:
        """Every metric's mean (a dict), or the one named `field`. Collective."""
        means = self.suite.result()
        return means if field is None else means[field]
