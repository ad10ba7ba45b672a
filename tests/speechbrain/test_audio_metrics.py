"""AudioMetricStats: a Brain reports PESQ / STOI / ... of its outputs as SpeechBrain's MetricStats
would, with SpeechBrain's relative lengths."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import TensorDataset

import baton as sb
from baton.metrics.item_metrics import build_metric
from tests.metrics.signals import voiced, with_noise

RATE = 16_000


class Denoiser(sb.Brain):
    """A 1x1 convolution over the noisy input, scored against the clean signal when evaluating."""

    def on_stage_start(self, stage: Any, epoch: Any = None) -> None:
        if stage != sb.Stage.TRAIN:
            self.quality = sb.AudioMetricStats(["si_snr", "stoi"], sample_rate=RATE)

    def compute_forward(self, batch: Any, stage: Any) -> torch.Tensor:
        noisy, _, _ = batch
        return self.modules.model(noisy)

    def compute_objectives(self, predictions: torch.Tensor, batch: Any, stage: Any) -> torch.Tensor:
        _, clean, lens = batch
        if stage != sb.Stage.TRAIN:
            self.quality.append(predictions, clean, lens)
        return torch.nn.functional.l1_loss(predictions, clean)

    def on_stage_end(self, stage: Any, stage_loss: Any, epoch: Any = None) -> None:
        if stage != sb.Stage.TRAIN:
            self.summary = self.quality.summarize()


def test_a_brain_summarizes_audio_metrics_over_its_test_set() -> None:
    lengths = [RATE, 7 * RATE // 8, RATE, 13 * RATE // 16, 15 * RATE // 16]  # STOI needs ~0.8 s
    clean = torch.zeros(5, 1, RATE)
    noisy = torch.zeros(5, 1, RATE)
    for i, n in enumerate(lengths):
        clean[i, 0, :n] = voiced(n / RATE, RATE, f0=120.0 + 20 * i, seed=i)
        noisy[i, 0, :n] = with_noise(clean[i, 0, :n], snr_db=3.0 * i, seed=i)
    relative = torch.tensor(lengths) / RATE
    model = torch.nn.Conv1d(1, 1, 1)
    with torch.no_grad():  # the identity: its outputs are the noisy inputs
        model.weight.fill_(1.0)
        model.bias.zero_()
    brain = Denoiser({"model": model}, lambda p: torch.optim.SGD(p, lr=0.0), run_opts={"device": "cpu"})

    brain.evaluate(TensorDataset(noisy, clean, relative), test_loader_kwargs={"batch_size": 2})

    lens = torch.tensor(lengths)
    for name in ("si_snr", "stoi"):
        expected = build_metric(name)(noisy, clean, lens, RATE).mean().item()
        assert brain.summary[name] == pytest.approx(expected, rel=1e-5)
    assert brain.quality.summarize("stoi") == pytest.approx(brain.summary["stoi"])
