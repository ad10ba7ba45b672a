"""The audio_metric evaluator: a registry metric as a config-driven evaluator."""

from __future__ import annotations

import pytest
import torch

from baton.errors import ConfigError
from baton.metrics.item_metrics import build_metric
from baton.steps import registry
from baton.steps.components import State
from tests.metrics.signals import voiced, with_noise


def evaluator(name: str, **options: object):
    built = registry.evaluators.build("audio_metric", options, f"evaluators.{name}")
    built.name = name
    return built


def test_audio_metric_scores_every_item_of_the_batch() -> None:
    clean = torch.stack([voiced(1.0, 16_000, seed=0), voiced(1.0, 16_000, f0=180.0, seed=1)])[:, None]
    noisy = torch.stack([with_noise(clean[0, 0], 0.0), with_noise(clean[1, 0], 20.0)])[:, None]
    lengths = torch.tensor([16_000, 12_000])
    state = State({"wav": clean, "lengths": lengths, "fake": noisy})

    got = evaluator("pesq_wb", metric="pesq", real="wav", fake="fake")(state, 16_000)

    expected = build_metric("pesq")(noisy, clean, lengths, 16_000).mean()
    assert set(got) == {"pesq_wb"} and got["pesq_wb"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_audio_metric_mistakes_are_one_line() -> None:
    with pytest.raises(ConfigError, match=r"evaluators.q: metric: unknown metric name 'pesk' \(did you mean 'pesq'\?\)"):
        evaluator("q", metric="pesk", real="wav", fake="fake")
    with pytest.raises(ConfigError, match=r"evaluators.q \(evaluator type 'audio_metric'\): missing option 'metric'"):
        evaluator("q", real="wav", fake="fake")
