"""Built-in losses on small tensors, against their formulas."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from baton.errors import ConfigError
from baton.steps import registry
from baton.steps.components import State, StepContext


def loss(kind: str, **options: object):
    built = registry.losses.build(kind, options, "test")
    built.name = kind
    return built


class Critic(nn.Module):
    """Two sub-discriminators: logits = features summed, one feature map each."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        self.calls += 1
        feature = x * self.scale
        return [feature.sum(-1), feature.mean(-1)], [[feature], [feature * 0.5]]


def context(state: dict, critic: Critic, trained: bool = False) -> StepContext:
    return StepContext(State(state), {"critic": critic}.__getitem__, ["critic"] if trained else [], "step", 0, 16000)


def test_pair_losses() -> None:
    real, fake = torch.zeros(2, 1, 256), torch.full((2, 1, 256), 0.5)
    ctx = context({"real": real, "fake": fake}, Critic())
    assert loss("l1", real="real", fake="fake")(ctx).item() == pytest.approx(0.5)
    assert loss("mse", real="real", fake="fake")(ctx).item() == pytest.approx(0.25)
    noise = torch.randn(2, 1, 4096)
    same = context({"real": noise, "fake": noise}, Critic())
    assert loss("mel", real="real", fake="fake", scales=[256])(same).item() == pytest.approx(0.0, abs=1e-6)
    assert loss("multi_res_stft", real="real", fake="fake")(same).item() == pytest.approx(0.0, abs=1e-5)
    assert loss("sisnr", real="real", fake="fake")(same).item() < -50  # -SI-SNR of a perfect copy


def test_gan_losses_follow_their_formulas() -> None:
    real, fake = torch.ones(2, 1, 4), torch.full((2, 1, 4), -0.5, requires_grad=True)
    critic = Critic()
    ctx = context({"real": real, "fake": fake}, critic)
    d_fake = [(fake * 2).sum(-1), (fake * 2).mean(-1)]
    expected = sum((1 - t).pow(2).mean() for t in d_fake)
    assert loss("generator_gan", discriminator="critic", fake="fake")(ctx).item() == pytest.approx(expected.item())
    hinge = loss("generator_gan", discriminator="critic", fake="fake", gan_type="hinge")(ctx)
    assert hinge.item() == pytest.approx(-sum(t.mean() for t in d_fake).item())
    assert critic.calls == 1, "both losses read D(fake) from the step's memo"

    trained = Critic()
    d_ctx = context({"real": real, "fake": fake}, trained, trained=True)
    value = loss("discriminator_gan", discriminator="critic", real="real", fake="fake")(d_ctx)
    d_real = [(real * 2).sum(-1), (real * 2).mean(-1)]
    expected = sum((1 - r).pow(2).mean() + f.pow(2).mean() for r, f in zip(d_real, d_fake, strict=True))
    assert value.item() == pytest.approx(expected.item())
    assert trained.calls == 1, "real and fake go through the discriminator in one forward"
    value.backward()
    assert fake.grad is None, "the discriminator's loss does not reach the generator"
    assert trained.scale.grad is not None
    with pytest.raises(ConfigError, match="gan_type 'wgan' is unknown"):
        loss("generator_gan", discriminator="critic", fake="fake", gan_type="wgan")


def test_feature_matching_compares_maps_with_the_real_side_fixed() -> None:
    real, fake = torch.ones(2, 1, 4), torch.zeros(2, 1, 4, requires_grad=True)
    ctx = context({"real": real, "fake": fake}, Critic())
    value = loss("feature_matching", discriminator="critic", real="real", fake="fake")(ctx)
    assert value.item() == pytest.approx(2.0 + 1.0)  # |0 - 2| on map 1, |0 - 1| on map 2
    value.backward()
    assert fake.grad is not None


def test_direct_reads_a_networks_own_loss() -> None:
    ctx = context({"commit": torch.tensor([1.0, 3.0]), "ids": torch.tensor([1, 2])}, Critic())
    assert loss("direct", key="commit")(ctx).item() == 2.0
    with pytest.raises(ConfigError, match="state key 'ids' holds Tensor, not a float tensor"):
        loss("direct", key="ids")(ctx)
