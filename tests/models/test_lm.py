"""The codes LM's building blocks: interleaving patterns, sampling, and the Fréchet distance."""

from __future__ import annotations

import pytest
import torch

from baton.metrics.frechet import frechet_distance
from baton.models.lm import sample
from baton.models.patterns import Pattern


@pytest.mark.parametrize("name, steps", [("delay", 5 + 3 - 1), ("flat", 5 * 3)])
def test_patterns_round_trip_and_predict_each_code_once(name: str, steps: int) -> None:
    codes = torch.randint(0, 10, (2, 3, 5))
    pattern = Pattern(name, 3, special=10)
    inputs, targets, valid = pattern.build(codes)
    assert inputs.shape == targets.shape == (2, steps, 3) and int(valid.sum()) == 15
    assert torch.equal(pattern.revert(targets, 5), codes)
    assert torch.equal(inputs[:, 1:], targets[:, :-1]) and (inputs[:, 0] == 10).all()  # shifted by one step


def test_the_delay_pattern_puts_codebook_k_k_steps_late() -> None:
    codes = torch.arange(12).view(1, 3, 4)  # codebook k, frame t: 4k + t
    _, targets, _ = Pattern("delay", 3, special=-1).build(codes)
    assert targets[0, 2].tolist() == [2, 5, 8]  # step 2: frame 2 of q1, frame 1 of q2, frame 0 of q3
    assert targets[0, 0].tolist() == [0, -1, -1]


def test_sampling_respects_top_k_top_p_and_temperature() -> None:
    logits = torch.tensor([[3.0, 2.0, 1.0, -5.0]]).repeat(2000, 1)
    generator = torch.Generator().manual_seed(0)
    assert set(sample(logits, 1.0, 2, 0.0, generator).tolist()) == {0, 1}
    assert set(sample(logits, 1.0, 0, 0.5, generator).tolist()) == {0}  # p(0) = 0.66 > 0.5
    assert (sample(logits, 0.0, 0, 0.0, generator) == 0).all()


def test_frechet_distance() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 3, generator=generator)
    b = torch.randn(4000, 3, generator=generator) * 2 + 1
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # Gaussians N(0, I) and N(1, 4I) in 3-D: 3 * 1^2 + 3 * (1 + 4 - 2 * 2) = 6.
    assert frechet_distance(a, b) == pytest.approx(6.0, rel=0.05)
    assert frechet_distance(a[:5], b[:7]) >= 0  # fewer items than needed for full rank: still real
