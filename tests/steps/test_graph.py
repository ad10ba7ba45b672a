"""A step config is checked before training: each mistake is one line naming where it is."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from baton.errors import ConfigError
from baton.steps import registry
from baton.steps.graph import build_graph
from tests.solver.extensible_configs import TINY_NETWORKS, TINY_STEPS


def build(networks: dict[str, Any] | None = None, steps: dict[str, Any] | None = None,
          evaluators: dict[str, Any] | None = None) -> Any:
    return build_graph(copy.deepcopy(networks or TINY_NETWORKS), copy.deepcopy(steps or TINY_STEPS), evaluators)


def edited(**paths: Any) -> dict[str, Any]:
    """TINY_STEPS with `a__b__c=value` set (None deletes the key)."""
    steps = copy.deepcopy(TINY_STEPS)
    for path, value in paths.items():
        *parents, leaf = path.split("__")
        node = steps
        for key in parents:
            node = node[key]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    return steps


def test_the_tiny_gan_builds_in_order() -> None:
    graph = build()
    assert [s.name for s in graph.steps] == ["generator", "discriminator"]
    generator = graph.steps[0]
    assert [i.name for i in generator.injectors] == ["mel", "vocoder"]
    assert [(loss.name, loss.weight) for loss in generator.losses] == [("l1", 10.0), ("adv", 1.0), ("fm", 2.0)]
    assert graph.writers["fake"][0] is generator


@pytest.mark.parametrize(
    "steps, message",
    [
        (edited(generator__losses__fm__type="feature_match"),
         r"steps.generator.losses.fm: unknown loss type 'feature_match' \(did you mean 'feature_matching'\?\); "
         r"known: .*discriminator_gan.*mse"),
        (edited(generator__injectors__mel__type="mell"),
         r"steps.generator.injectors.mel: unknown injector type 'mell' \(did you mean 'mel'\?\); known: augment, constant"),
        (edited(generator__losses__l1__real="wave"),
         r"steps.generator.losses.l1 reads 'wave', which nothing provides \(did you mean 'wav'\?\); "
         r"the batch gives wav, lengths, labels, injectors write mel, fake"),
        (edited(generator__injectors__vocoder__in="spectrogram"),
         r"steps.generator.injectors.vocoder reads 'spectrogram', which nothing provides"),
        (edited(discriminator__training="critic"),
         r"steps.discriminator.training: network 'critic' is not in 'networks' \(known: generator, mpd\)"),
        (edited(discriminator__losses__disc__discriminator="critic"),
         r"steps.discriminator loss 'disc': network 'critic' is not in 'networks'"),
        (edited(generator__injectors__mel__out="fake"),
         r"steps.generator.injectors.vocoder writes 'fake', already written by steps.generator.injectors.mel"),
        (edited(generator__injectors__mel__out="wav"),
         r"steps.generator.injectors.mel writes 'wav', a field of the batch"),
        (edited(generator__losses__l1__wieght=2),
         r"steps.generator.losses.l1 \(loss type 'l1'\): unknown option 'wieght' \(did you mean 'weight'\?\); "
         r"it takes weight, after, before, real, fake"),
        (edited(generator__losses__adv__fake=None),
         r"steps.generator.losses.adv \(loss type 'generator_gan'\): missing option 'fake'"),
        (edited(generator__optimiser="adam"),
         r"steps.generator: unknown key 'optimiser' \(did you mean 'optimizer'\?\)"),
        (edited(generator__every=-1), r"steps.generator.every=-1: expected a whole number >= 0"),
        (edited(discriminator__losses={}), r"steps.discriminator.losses: a step needs at least one loss"),
        (edited(discriminator__losses__l1={"type": "l1", "real": "wav", "fake": "fake"}),
         r"steps.discriminator.losses.l1 and steps.generator.losses.l1 both report metric 'l1'"),
        (edited(generator__injectors__mel__n_fft=63),
         r"steps.generator.injectors.mel: n_fft - hop_length must be even"),
        (edited(generator__losses__adv__gan_type="wgan"),
         r"steps.generator.losses.adv: gan_type 'wgan' is unknown; choose one of lsgan, hinge"),
        (edited(generator__losses__l1__weight="ten"), r"steps.generator.losses.l1.weight='ten': expected a number"),
        (edited(generator__injectors__mel__in="fake"),
         r"steps.generator.injectors.mel reads 'fake', which steps.generator.injectors.vocoder writes after it"),
    ],
)
def test_a_mistake_is_one_line_naming_the_step_and_key(steps: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        build(steps=steps)
    assert "\n" not in str(error.value)


def test_a_network_that_no_step_trains_must_be_frozen() -> None:
    networks = {**TINY_NETWORKS, "critic": dict(TINY_NETWORKS["mpd"])}
    with pytest.raises(ConfigError, match=r"networks.critic \(discriminator\) is trained by no step; .*'frozen'"):
        build(networks=networks)
    build(networks={**networks, "critic": {**networks["critic"], "type": "frozen"}})


def test_a_frozen_network_cannot_be_trained() -> None:
    networks = {**TINY_NETWORKS, "mpd": {**TINY_NETWORKS["mpd"], "type": "frozen"}}
    with pytest.raises(ConfigError, match=r"steps.discriminator.training: network 'mpd' is frozen"):
        build(networks=networks)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"type": "critic", "which_model": "mel_vocoder"}, r"networks.generator.type='critic': choose one of generator"),
        ({"type": "generator"}, r"networks.generator: give exactly one of 'which_model'"),
        ({"type": "generator", "which_model": "vocodr"}, r"unknown network type 'vocodr' \(did you mean 'mel_vocoder'\?\); known: mel_vocoder"),
        ({"type": "generator", "which_model": "mel_vocoder", "n_mel": 4},
         r"networks.generator \(mel_vocoder\): unknown option 'n_mel' \(did you mean 'n_mels'\?\)"),
        ({"type": "generator", "_target_": "torch.nn.Nope"}, r"networks.generator: cannot import network 'torch.nn.Nope'"),
    ],
)
def test_network_mistakes(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(networks={**TINY_NETWORKS, "generator": spec})


def test_networks_from_an_import_path_with_kwargs() -> None:
    networks = {**TINY_NETWORKS, "extra": {"type": "frozen", "_target_": "torch.nn.Conv1d",
                                           "kwargs": {"in_channels": 1, "out_channels": 2}, "kernel_size": 3}}
    spec = build(networks=networks).networks["extra"]
    module = spec.factory(**spec.kwargs)
    assert module.weight.shape == (2, 1, 3)


def test_evaluator_mistakes() -> None:
    with pytest.raises(ConfigError, match=r"evaluators.mel_distance reads 'fakes', which nothing provides"):
        build(evaluators={"mel_distance": {"type": "mel_distance", "real": "wav", "fake": "fakes"}})
    with pytest.raises(ConfigError, match=r"evaluators.l1 and steps.generator.losses.l1 both report metric 'l1'"):
        build(evaluators={"l1": {"type": "sisnr", "real": "wav", "fake": "fake"}})
    with pytest.raises(ConfigError, match=r"unknown evaluator type 'fad'"):
        build(evaluators={"x": {"type": "fad"}})


def test_a_user_component_cannot_take_a_built_in_name() -> None:
    from baton.steps import Loss, register_loss

    with pytest.raises(ValueError, match="loss type 'mel' is taken by baton.steps.losses.MelLoss"):
        @register_loss("mel")
        class MyMel(Loss):
            pass

    assert "generator_gan" in registry.losses.names()  # the built-ins are all there
