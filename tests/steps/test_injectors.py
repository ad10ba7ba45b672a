"""Built-in injectors on small tensors: what each writes, and how it draws randomness."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from baton.errors import ConfigError
from baton.steps import registry
from baton.steps.components import State, StepContext


def injector(kind: str, inputs: list[str], outputs: list[str], **options: object):
    built = registry.injectors.build(kind, options, "test")
    built.name, built.inputs, built.outputs = kind, inputs, outputs
    built.check_io("test")
    return built


def context(state: dict, networks: dict[str, nn.Module] | None = None, training: bool = True) -> StepContext:
    nets = networks or {}
    return StepContext(State(state), nets.__getitem__, list(nets), "step", 0, 16000, training)


def test_generator_runs_a_network_and_splits_its_outputs() -> None:
    class TwoHeads(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x * 2, x.sum()

    x = torch.ones(2, 3, requires_grad=True)
    ctx = context({"x": x}, {"net": TwoHeads()})
    double, total = injector("generator", ["x"], ["double", "total"], generator="net")(ctx, x)
    assert torch.equal(double, x * 2) and total.item() == 6 and double.requires_grad
    no_grad = injector("generator", ["x"], ["y"], generator="net", grad=False)(ctx, x)
    assert not no_grad[0].requires_grad


def test_generator_picks_fields_of_a_dict_output() -> None:
    class Named(nn.Module):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"y": x + 1, "commit_loss": x.mean()}

    x = torch.zeros(2, 3)
    ctx = context({"x": x}, {"codec": Named()})
    y, commit = injector("generator", ["x"], ["y", "commit"], generator="codec", fields=["y", "commit_loss"])(ctx, x)
    assert torch.equal(y, x + 1) and commit.item() == 0
    only = injector("generator", ["x"], ["y"], generator="codec", fields=["y"])(ctx, x)
    assert isinstance(only, torch.Tensor) and torch.equal(only, x + 1)


def test_constant_noise_and_detach() -> None:
    x = torch.randn(2, 1, 8, requires_grad=True)
    ctx = context({"x": x})
    assert torch.equal(injector("constant", ["x"], ["z"])(ctx, x), torch.zeros(2, 1, 8))
    assert torch.equal(injector("constant", ["x"], ["z"], value="ones")(ctx, x), torch.ones(2, 1, 8))
    torch.manual_seed(0)
    noise = injector("noise", ["x"], ["n"], scale=0.5)(ctx, x)
    torch.manual_seed(0)
    assert torch.equal(noise, torch.randn(2, 1, 8) * 0.5)
    added = injector("noise", ["x"], ["n"], scale=0.0, add=True)(ctx, x)
    assert torch.equal(added, x)
    assert not injector("detach", ["x"], ["d"])(ctx, x).requires_grad
    with pytest.raises(ConfigError, match="value 'twos' is unknown"):
        injector("constant", ["x"], ["z"], value="twos")


def test_slice_crops_every_input_at_the_same_place() -> None:
    wav = torch.arange(64.0).view(1, 1, 64)
    mel = torch.arange(16.0).view(1, 1, 16)  # 4 samples per frame
    crop = injector("slice", ["mel", "wav"], ["mel_crop", "wav_crop"], length=4, factors=[1, 4])
    torch.manual_seed(3)
    mel_crop, wav_crop = crop(context({}), mel, wav)
    start = int(mel_crop[0, 0, 0])
    assert torch.equal(mel_crop[0, 0], torch.arange(start, start + 4.0))
    assert torch.equal(wav_crop[0, 0], torch.arange(4.0 * start, 4.0 * start + 16))
    first, _ = crop(context({}, training=False), mel, wav)
    assert torch.equal(first[0, 0], torch.arange(4.0)), "outside training the crop starts at 0"
    with pytest.raises(ConfigError, match="inputs hold 4 units, fewer than length=8"):
        injector("slice", ["mel"], ["m"], length=8)(context({}), mel[..., :4])
    with pytest.raises(ConfigError, match="writes 2 key"):
        injector("slice", ["mel", "wav"], ["only_one"], length=4)


def test_augment_changes_gain_polarity_and_shift_in_training_only() -> None:
    x = torch.randn(64, 1, 32)
    augment = injector("augment", ["x"], ["y"], gain_db=[-6, -6], polarity=1.0, shift=0)
    y = augment(context({}), x)
    torch.testing.assert_close(y, -x * 10 ** (-6 / 20))
    shifted = injector("augment", ["x"], ["y"], shift=3)(context({}), x)
    assert not torch.equal(shifted, x) and torch.allclose(shifted.pow(2).sum(-1), x.pow(2).sum(-1))
    assert augment(context({}, training=False), x) is x


def test_mel_gives_one_frame_per_hop() -> None:
    wav = torch.sin(torch.linspace(0, 400, 4096)).view(2, 1, 2048)
    mel = injector("mel", ["wav"], ["mel"], n_fft=256, hop_length=64, n_mels=20)(context({}), wav)
    assert mel.shape == (2, 20, 2048 // 64) and torch.isfinite(mel).all()
    with pytest.raises(ConfigError, match="expects mono audio"):
        injector("mel", ["wav"], ["mel"], n_fft=256, hop_length=64)(context({}), torch.zeros(2, 2, 2048))
