"""The extensible solver: a GAN as YAML steps, on the built-in dataset, in real runs.

Each test builds a tiny generator/discriminator pair (tests/solver/extensible_configs.py) and
checks one promise of docs/steps.md: steps touch only their networks, weights scale
gradients, state is detached between steps, gating by update, checkpoints, and that the YAML
path computes exactly what the same GAN written by hand computes.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import soundfile
import torch
from omegaconf import OmegaConf

from baton.errors import ConfigError
from baton.solver.extensible import ExtensibleSolver
from baton.solver.standard import StandardSolver
from baton.steps import Evaluator, Loss, register_evaluator, register_loss
from tests.solver.extensible_configs import TINY_NETWORKS, TINY_STEPS, tiny_gan


@pytest.fixture
def env(synth_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BATON_DATA_DIR", str(synth_cache))
    monkeypatch.setenv("BATON_XP_DIR", str(tmp_path / "xps"))
    return tmp_path


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


class Recording(ExtensibleSolver):
    """Records, around each step, the update it ran at and the networks' weights."""

    def build_model(self) -> None:
        super().build_model()
        self.ran: list[tuple[str, int]] = []
        self.snapshots: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self.states_after: list[list[Any]] = []
        self.provided: list[list[str]] = []  # keys computed on demand before each step
        self.leaked: list[bool] = []  # the discriminator holds a gradient after the generator step

    def train_step(self, step: Any, update: Any, states: list[Any]) -> dict[str, Any]:
        before = {n: weights(self.networks[n]) for n in self.graph.networks}
        provided_before = set(states[0].provisional)
        metrics = super().train_step(step, update, states)
        self.provided.append([k for k in states[0].writers if k in states[0].provisional - provided_before])
        if step.name == "generator" and "mpd" in self.graph.networks:
            self.leaked.append(any(p.grad is not None for p in self.networks["mpd"].parameters()))
        after = {n: weights(self.networks[n]) for n in self.graph.networks}
        self.ran.append((step.name, self.update_count))
        self.snapshots.append((step.name, before, after))
        self.states_after.append([dict(s) for s in states])  # before the solver detaches them
        return metrics


def test_each_step_changes_only_the_networks_it_trains(env: Path) -> None:
    cfg = tiny_gan("optim.updates_per_epoch=2")
    with Recording(cfg) as solver:
        solver.run()
    assert [name for name, *_ in solver.snapshots] == ["generator", "discriminator"] * 2
    for name, before, after in solver.snapshots:
        trained = "generator" if name == "generator" else "mpd"
        untouched = "mpd" if name == "generator" else "generator"
        assert not same(before[trained], after[trained]), f"step {name} did not train {trained}"
        assert same(before[untouched], after[untouched]), f"step {name} changed {untouched}"
    # The generator's adversarial loss went through the discriminator without leaving it a gradient.
    assert solver.leaked == [False, False]


def test_the_discriminator_step_may_come_first(env: Path) -> None:
    """Its `fake` is then computed on demand, without autograd; the generator step computes
    its own when it runs."""
    steps = {"discriminator": TINY_STEPS["discriminator"], "generator": TINY_STEPS["generator"]}
    cfg = tiny_gan("optim.updates_per_epoch=2", steps=steps)
    with Recording(cfg) as solver:
        history = solver.run()
    assert [name for name, _ in solver.ran] == ["discriminator", "generator"] * 2
    assert solver.provided[:2] == [["mel", "fake"], []]
    assert {"disc", "l1"} <= set(history[0]["valid"])


def test_state_is_detached_after_each_step(env: Path) -> None:
    cfg = tiny_gan("optim.updates_per_epoch=1")
    seen: list[dict[str, Any]] = []

    class Spy(Recording):
        def train_step(self, step: Any, update: Any, states: list[Any]) -> dict[str, Any]:
            # What this step receives: the previous step's outputs, already detached.
            seen.append({k: v for k, v in states[0].items() if isinstance(v, torch.Tensor)})
            return super().train_step(step, update, states)

    with Spy(cfg) as solver:
        solver.run()
    generator_out = solver.states_after[0][0]
    assert generator_out["fake"].grad_fn is not None, "the test needs a graph to be detached"
    received_by_discriminator = seen[1]
    assert set(received_by_discriminator) >= {"wav", "mel", "fake"}
    for key, value in received_by_discriminator.items():
        assert value.grad_fn is None and not value.requires_grad, key


def test_every_and_after_gate_steps_by_update(env: Path) -> None:
    steps = copy.deepcopy(TINY_STEPS)
    steps["generator"]["every"] = 2
    steps["discriminator"]["after"] = 3
    cfg = tiny_gan("optim.updates_per_epoch=6", steps=steps)
    with Recording(cfg) as solver:
        solver.run()
    assert [u for n, u in solver.ran if n == "generator"] == [0, 2, 4]
    assert [u for n, u in solver.ran if n == "discriminator"] == [3, 4, 5]
    # At updates 3 and 5 the generator step is off: the discriminator's `fake` (and the `mel`
    # it needs) come from the generator's injectors on demand, without autograd.
    by_update = {(n, u): keys for (n, u), keys in zip(solver.ran, solver.provided, strict=True)}
    assert by_update[("discriminator", 3)] == ["mel", "fake"] == by_update[("discriminator", 5)]
    assert by_update[("discriminator", 4)] == []


def test_a_gated_loss_starts_at_its_update(env: Path) -> None:
    steps = copy.deepcopy(TINY_STEPS)
    steps["generator"]["losses"]["adv"]["after"] = 2
    cfg = tiny_gan("optim.updates_per_epoch=3", "optim.epochs=1", steps=steps)

    per_update: list[set[str]] = []

    class Terms(ExtensibleSolver):
        def train_step(self, step: Any, update: Any, states: list[Any]) -> dict[str, Any]:
            metrics = super().train_step(step, update, states)
            if step.name == "generator":
                per_update.append(set(metrics))
            return metrics

    with Terms(cfg) as solver:
        solver.run()
    assert ["adv" in terms for terms in per_update] == [False, False, True]


def one_network_config(env: Path, weight: float) -> Any:
    """A 1x1 convolution trained by SGD (lr 1, no momentum) on weight * L1(wav, conv(wav))."""
    networks = {"scale": {"type": "generator", "_target_": "torch.nn.Conv1d",
                          "in_channels": 1, "out_channels": 1, "kernel_size": 1}}
    steps = {"fit": {"training": "scale", "optimizer": "sgd", "optimizer_params": {"lr": 1.0, "momentum": 0.0},
                     "injectors": {"run": {"type": "generator", "generator": "scale", "in": "wav", "out": "out"}},
                     "losses": {"l1": {"type": "l1", "real": "wav", "fake": "out", "weight": weight}}}}
    return tiny_gan("optim.updates_per_epoch=1", "dataset.shuffle=false", "best_metric.name=l1",
                    "generate.audio=[out]",
                    networks=networks, steps=steps, evaluators={})


@pytest.mark.parametrize("weight", [0.5, 1.0])
def test_a_loss_weight_scales_its_gradient(env: Path, weight: float) -> None:
    captured: dict[str, Any] = {}

    class Capture(ExtensibleSolver):
        def train_step(self, step: Any, update: Any, states: list[Any]) -> dict[str, Any]:
            captured["wav"] = states[0]["wav"].clone()
            captured["before"] = copy.deepcopy(self.networks["scale"])
            return super().train_step(step, update, states)

    with Capture(one_network_config(env, weight)) as solver:
        solver.run()
    conv, wav = captured["before"], captured["wav"]
    hand = torch.nn.functional.l1_loss(conv(wav), wav)  # the unweighted loss, by hand
    hand.backward()
    trained = solver.networks["scale"]
    # SGD with lr 1: new = old - weight * grad of the unweighted loss.
    torch.testing.assert_close(trained.weight, conv.weight - weight * conv.weight.grad)
    torch.testing.assert_close(trained.bias, conv.bias - weight * conv.bias.grad)


def test_checkpoint_holds_every_steps_optimizer_scheduler_and_scaler(env: Path) -> None:
    steps = copy.deepcopy(TINY_STEPS)
    steps["generator"]["lr_scheduler"] = {"lr_scheduler": "cosine", "warmup": 1}
    steps["discriminator"]["clip_grad_norm"] = 1.0
    cfg = tiny_gan("optim.updates_per_epoch=2", steps=steps)
    with ExtensibleSolver(cfg) as solver:
        history = solver.run()
    assert "discriminator_grad_norm" in history[0]["train"]
    saved = torch.load(Path(cfg.xp.folder) / "checkpoint.th", weights_only=True)["state"]["registered"]
    assert set(saved["networks"]) == {"generator", "mpd"}
    optimizers = saved["optimizers"]
    assert set(optimizers) == {"generator", "discriminator"}
    for state in optimizers.values():
        assert set(state) == {"optimizer", "scheduler", "scaler", "skipped_updates"}
        assert state["optimizer"]["state"], "the optimizer's moments are saved"
    assert optimizers["generator"]["scheduler"]["last_epoch"] == 2
    assert optimizers["discriminator"]["scheduler"] is None  # constant LR: no scheduler
    # CPU float32 needs no GradScaler; `autocast_dtype=float16` on CUDA gives each step its own.
    assert optimizers["generator"]["scaler"] is None


def test_frozen_networks_stay_in_eval_mode_without_gradients(env: Path) -> None:
    networks = copy.deepcopy(TINY_NETWORKS)
    networks["judge"] = {**networks["mpd"], "type": "frozen"}
    steps = copy.deepcopy(TINY_STEPS)
    steps["generator"]["losses"]["judge"] = {"type": "feature_matching", "discriminator": "judge",
                                             "real": "wav", "fake": "fake", "weight": 0.5}
    cfg = tiny_gan("optim.updates_per_epoch=2", networks=networks, steps=steps)
    with ExtensibleSolver(cfg) as solver:
        before = weights(solver.networks["judge"])
        solver.run()
        judge = solver.networks["judge"]
        assert not judge.training and not any(p.requires_grad for p in judge.parameters())
        assert same(before, weights(judge))
        assert "judge" not in solver.registered_modules()


@register_loss("test_energy")
class EnergyLoss(Loss):
    """A user's own loss: the mean energy of a key."""

    def __init__(self, key: str) -> None:
        self.key = key

    def reads(self) -> list[str]:
        return [self.key]

    def __call__(self, ctx: Any) -> torch.Tensor:
        return ctx.state[self.key].pow(2).mean()


@register_evaluator("test_peak")
class PeakEvaluator(Evaluator):
    def __init__(self, key: str) -> None:
        self.key = key

    def reads(self) -> list[str]:
        return [self.key]

    def __call__(self, state: Any, sample_rate: int) -> dict[str, torch.Tensor]:
        return {self.name: state[self.key].abs().amax(dim=-1).mean()}


def test_user_registered_components_run_beside_the_built_ins(env: Path) -> None:
    steps = copy.deepcopy(TINY_STEPS)
    steps["generator"]["losses"]["energy"] = {"type": "test_energy", "key": "fake", "weight": 0.1}
    evaluators = {"peak": {"type": "test_peak", "key": "fake"},
                  "mel_distance": {"type": "mel_distance", "real": "wav", "fake": "fake", "scales": [64]}}
    cfg = tiny_gan("optim.updates_per_epoch=2", steps=steps, evaluators=evaluators)
    with ExtensibleSolver(cfg) as solver:
        history = solver.run()
    assert "energy" in history[0]["train"]
    assert {"peak", "mel_distance", "energy", "generator_loss"} <= set(history[0]["valid"])
    assert 0 < history[0]["valid"]["peak"] <= 1  # the vocoder ends in tanh


def test_generate_writes_the_configured_state_keys_as_wavs(env: Path) -> None:
    cfg = tiny_gan("optim.updates_per_epoch=1")
    with ExtensibleSolver(cfg) as solver:
        solver.run()
    files = sorted(p.name for p in (Path(cfg.xp.folder) / "samples" / "1").glob("*.wav"))
    assert len(files) == 4 and files[0].endswith("_fake.wav") and files[1].endswith("_wav.wav")
    fake, rate = soundfile.read(Path(cfg.xp.folder) / "samples" / "1" / files[0])
    assert rate == 16000 and len(fake) == 1024 and abs(fake).max() > 0


def test_a_config_error_is_raised_before_training(env: Path) -> None:
    steps = copy.deepcopy(TINY_STEPS)
    steps["discriminator"]["losses"]["disc"]["fake"] = "fakes"
    with pytest.raises(ConfigError, match=r"steps.discriminator.losses.disc reads 'fakes'.*did you mean 'fake'"):
        ExtensibleSolver(tiny_gan(steps=steps))
    assert not list((env / "xps").rglob("checkpoint.th"))


# ---------------------------------------------------------------- the same GAN, by hand
class HandWrittenGAN(StandardSolver):
    """TINY_NETWORKS/TINY_STEPS written as a StandardSolver: what the YAML must compute."""

    best_metric_name = None  # it has no valid metrics to pick a best state by

    def build_dataloaders(self) -> None:
        from baton.data.builders import split_loaders

        self.dataloaders.update(split_loaders(self.cfg.dataset, ["train", "valid"], seed=int(self.cfg.seed),
                                              batch_size=int(self.cfg.dataset.batch_size)))

    def build_model(self) -> None:
        from baton.models.discriminators import MultiPeriodDiscriminator
        from baton.models.vocoder import MelVocoder
        from baton.optim import build_optimizer
        from baton.steps.injectors import MelInjector

        g, d = TINY_NETWORKS["generator"], TINY_NETWORKS["mpd"]
        self.generator = MelVocoder(**{k: v for k, v in g.items() if k not in ("type", "which_model")})
        self.mpd = MultiPeriodDiscriminator(**{k: v for k, v in d.items() if k not in ("type", "which_model")})
        self.mel = MelInjector(n_fft=64, hop_length=16, n_mels=16)
        self.g_step = self.make_stepper(build_optimizer([self.generator], self.cfg.optim), None, self.generator, name="generator")
        self.d_step = self.make_stepper(build_optimizer([self.mpd], self.cfg.optim), None, self.mpd, name="discriminator")
        self.register_stateful("generator", "mpd", "g_step", "d_step")

    def train(self) -> dict[str, float]:
        self.run_updates(self.one_update)
        return {}

    def one_update(self, update: Any) -> None:
        from baton.steps.injectors import log_mel

        (_, batch), = update.micro_batches(self.g_step)
        wav = batch.wav
        # Generator step: the discriminator needs no gradient of its own here.
        self.mpd.requires_grad_(False)
        fake = self.generator(log_mel(wav, self.mel, 16000))
        # The losses in the order the YAML lists them (autograd sums the gradients that
        # reach `fake` in the order its uses were recorded).
        l1 = torch.nn.functional.l1_loss(fake, wav)
        fake_logits, fake_maps = self.mpd(fake)
        with torch.no_grad():
            _, real_maps = self.mpd(wav)
        adv = torch.stack([(1 - t).pow(2).mean() for t in fake_logits]).sum()
        fm = torch.stack([(f - r).abs().mean() for rs, fs in zip(real_maps, fake_maps, strict=True) for r, f in zip(rs, fs, strict=True)]).sum()
        self.g_step.step(l1 * 10.0 + adv * 1.0 + fm * 2.0)
        self.mpd.requires_grad_(True)
        # Discriminator step, on the generator's output without its graph.
        fake = fake.detach()
        self.generator.requires_grad_(False)
        list(update.micro_batches(self.d_step))
        logits, _ = self.mpd(torch.cat([wav, fake]))
        n = wav.shape[0]
        disc = torch.stack([(1 - t[:n]).pow(2).mean() + t[n:].pow(2).mean() for t in logits]).sum()
        self.d_step.step(disc * 1.0)
        self.generator.requires_grad_(True)

    def valid(self) -> dict[str, float]:
        return {}

    def evaluate(self) -> dict[str, float]:
        return {}

    def generate(self) -> dict[str, float]:
        return {}


def test_the_yaml_gan_equals_the_same_gan_written_by_hand(env: Path) -> None:
    """20 updates: identical weights, so the config path adds no hidden behaviour."""
    overrides = ["optim.updates_per_epoch=20", "evaluate.every=0", "generate.every=0", "optim.epochs=2"]
    cfg = tiny_gan("label=yaml", *overrides)
    cfg.optim.epochs = 1  # one epoch of 20 updates, no evaluate/generate (they do not train)
    with ExtensibleSolver(cfg) as solver:
        solver.run()
        yaml_weights = {n: weights(solver.networks[n]) for n in ("generator", "mpd")}
    hand_cfg = tiny_gan("label=hand", *overrides)
    hand_cfg.optim.epochs = 1
    with HandWrittenGAN(hand_cfg) as hand:
        initial = weights(hand.generator)
        hand.run()
        hand_weights = {"generator": weights(hand.generator), "mpd": weights(hand.mpd)}
    assert not same(initial, hand_weights["generator"]), "20 updates must change the weights"
    for name in yaml_weights:
        for key, value in yaml_weights[name].items():
            assert torch.equal(value, hand_weights[name][key]), f"{name}.{key} differs"


def test_config_sections_are_plain_yaml(env: Path) -> None:
    """What a user writes in solver/gan/*.yaml is what the graph reads (no hidden defaults)."""
    cfg = tiny_gan()
    assert OmegaConf.to_container(cfg.steps) == TINY_STEPS


class Regression(ExtensibleSolver):
    """Not audio: loaders of dicts, whose keys the config reads."""

    batch_keys = ("x", "y")

    def build_dataloaders(self) -> None:
        from torch.utils.data import DataLoader

        generator = torch.Generator().manual_seed(0)
        x = torch.randn(64, 4, generator=generator)
        items = [{"x": xi, "y": xi.sum(-1, keepdim=True)} for xi in x]
        self.dataloaders["train"] = DataLoader(items, batch_size=16, shuffle=True, generator=generator)
        self.dataloaders["valid"] = DataLoader(items, batch_size=16)


def test_a_subclass_feeds_dict_batches_with_its_own_keys(env: Path) -> None:
    networks = {"linear": {"type": "generator", "_target_": "torch.nn.Linear", "in_features": 4, "out_features": 1}}
    steps = {"fit": {"training": "linear", "optimizer_params": {"lr": 0.05},
                     "injectors": {"predict": {"type": "generator", "generator": "linear", "in": "x", "out": "pred"}},
                     "losses": {"mse": {"type": "mse", "real": "y", "fake": "pred"}}}}
    cfg = tiny_gan("optim.updates_per_epoch=40", "optim.epochs=2", "best_metric.name=mse", "generate.audio=[]",
                   networks=networks, steps=steps, evaluators={})
    with Regression(cfg) as solver:
        history = solver.run()
    assert history[-1]["valid"]["mse"] < 0.1 * history[0]["train"]["mse"]
    with pytest.raises(ConfigError, match=r"reads 'wav', which nothing provides.*the batch gives x, y"):
        steps["fit"]["losses"]["mse"]["real"] = "wav"
        Regression(tiny_gan("label=bad", "generate.audio=[]", networks=networks, steps=steps, evaluators={}))


def test_a_part_its_author_froze_stays_frozen(env: Path) -> None:
    class HalfFrozen(ExtensibleSolver):
        def build_model(self) -> None:
            super().build_model()
            self.networks["generator"].pre.requires_grad_(False)

    with HalfFrozen(tiny_gan("optim.updates_per_epoch=2")) as solver:
        before = weights(solver.networks["generator"].pre)
        solver.run()
        pre = solver.networks["generator"].pre
        assert not any(p.requires_grad for p in pre.parameters())
        assert all(p.grad is None for p in pre.parameters()) and same(before, weights(pre))


def test_step_settings_fall_back_to_optim_and_refuse_other_keys(env: Path) -> None:
    with ExtensibleSolver(tiny_gan("optim.updates_per_epoch=1", "optim.max_norm=1.0")) as solver:
        history = solver.run()
    assert {"generator_grad_norm", "discriminator_grad_norm"} <= set(history[0]["train"])
    steps = copy.deepcopy(TINY_STEPS)
    steps["generator"]["optimizer_params"] = {"epochs": 3}
    with pytest.raises(ConfigError, match=r"steps.generator.optimizer_params.epochs is not an optimizer setting"):
        ExtensibleSolver(tiny_gan("label=bad", steps=steps))


def test_an_evaluator_that_skips_epochs_cannot_pick_the_best_state(env: Path) -> None:
    evaluators = {"mel_distance": {"type": "mel_distance", "real": "wav", "fake": "fake", "every": 2}}
    with pytest.raises(ConfigError, match=r"best_metric.name='mel_distance' is evaluators.mel_distance, which runs every 2"):
        ExtensibleSolver(tiny_gan(evaluators=evaluators))


def denoiser_config(*overrides: str, fixed_eval: bool = True) -> Any:
    """A 1x1 conv denoiser on noise added by a `noise` injector; `si_snr_in` measures the noisy
    input against the clean one, so it depends on the noise alone."""
    networks = {"denoiser": {"type": "generator", "_target_": "torch.nn.Conv1d",
                             "in_channels": 1, "out_channels": 1, "kernel_size": 1}}
    steps = {"fit": {"training": "denoiser", "optimizer": "sgd", "optimizer_params": {"lr": 0.1, "momentum": 0.0},
                     "injectors": {"noisy": {"type": "noise", "in": "wav", "out": "noisy", "add": True, "scale": 0.1,
                                             "fixed_eval": fixed_eval},
                                   "run": {"type": "generator", "generator": "denoiser", "in": "noisy", "out": "out"}},
                     "losses": {"l1": {"type": "l1", "real": "wav", "fake": "out"}}}}
    evaluators = {"si_snr_in": {"type": "sisnr", "real": "wav", "fake": "noisy"},
                  "si_snr_out": {"type": "sisnr", "real": "wav", "fake": "out"}}
    return tiny_gan("optim.updates_per_epoch=2", "optim.epochs=3", "best_metric.name=l1", "generate.audio=[out]",
                    "evaluate.every=1", *overrides, networks=networks, steps=steps, evaluators=evaluators)


def test_evaluation_noise_is_the_same_every_epoch(env: Path) -> None:
    """Outside training `noise` draws from each item's seed: the noisy evaluation set is fixed,
    so `si_snr_in` is equal at every epoch while the denoiser's own score moves."""
    with ExtensibleSolver(denoiser_config()) as solver:
        history = solver.run()
    for stage in ("valid", "evaluate"):
        inputs = {epoch[stage]["si_snr_in"] for epoch in history}
        assert len(inputs) == 1, (stage, inputs)
    assert history[0]["evaluate"]["si_snr_in"] != history[0]["valid"]["si_snr_in"]  # other items
    # The denoiser's output moves (its L1; SI-SNR ignores the 1x1 conv's scale, so it may not).
    assert len({epoch["valid"]["l1"] for epoch in history}) == 3, [epoch["valid"] for epoch in history]
    with ExtensibleSolver(denoiser_config("seed=3", fixed_eval=False)) as fresh:
        assert len({epoch["valid"]["si_snr_in"] for epoch in fresh.run()}) == 3  # today's draws, on request


def test_a_paired_manifest_gives_the_steps_its_streams(env: Path, tmp_path: Path) -> None:
    """`dataset.streams: [noisy, clean]` makes both streams of a paired manifest state keys; they
    are cropped alike, so noisy (here exactly twice clean) scores as clean scaled, not as noise."""
    import numpy as np

    from baton.data.manifest import write_manifest
    from baton.data.pairs import scan_pairs

    for i in range(8):
        clean = np.random.default_rng(i).uniform(-0.4, 0.4, 16000)
        for folder, audio in (("noisy", 2 * clean), ("clean", clean)):
            (tmp_path / folder).mkdir(exist_ok=True)
            soundfile.write(str(tmp_path / folder / f"{i}.wav"), audio, 16000, subtype="FLOAT")
    manifest = tmp_path / "pairs.jsonl"
    write_manifest(manifest, scan_pairs({"noisy": tmp_path / "noisy", "clean": tmp_path / "clean"}).entries)
    splits = [f"dataset.{split}.manifest={manifest}" for split in ("train", "valid", "evaluate", "generate")]
    networks = {"denoiser": {"type": "generator", "_target_": "torch.nn.Conv1d",
                             "in_channels": 1, "out_channels": 1, "kernel_size": 1}}
    steps = {"fit": {"training": "denoiser", "optimizer": "sgd", "optimizer_params": {"lr": 0.1},
                     "injectors": {"run": {"type": "generator", "generator": "denoiser", "in": "noisy", "out": "out"}},
                     "losses": {"l1": {"type": "l1", "real": "clean", "fake": "out"}}}}
    evaluators = {"si_snr_in": {"type": "sisnr", "real": "clean", "fake": "noisy"}}
    overrides = [*splits, "dataset.batch_size=4", "optim.updates_per_epoch=2", "optim.epochs=1",
                 "best_metric.name=l1", "generate.audio=[out]"]
    with pytest.raises(ConfigError, match="steps.fit.injectors.run reads 'noisy', which nothing provides"):
        ExtensibleSolver(tiny_gan(*overrides, networks=networks, steps=steps, evaluators=evaluators))

    with ExtensibleSolver(tiny_gan(*overrides, "dataset.streams=[noisy,clean]", networks=networks, steps=steps,
                                   evaluators=evaluators)) as solver:
        (epoch,) = solver.run()
    assert epoch["valid"]["si_snr_in"] > 60 and epoch["evaluate"]["si_snr_in"] > 60  # aligned, sample for sample
    assert epoch["train"]["l1"] > 0


def test_dataset_streams_must_be_the_manifests(env: Path, tmp_path: Path) -> None:
    from baton.data.dataset import AudioDataset
    from baton.errors import DataError
    from tests.data.audio_files import write_tone

    for folder in ("mix", "vocals"):
        write_tone(tmp_path / folder / "a.wav", 0.5)
    from baton.data.pairs import scan_pairs

    entries = scan_pairs({"mix": tmp_path / "mix", "vocals": tmp_path / "vocals"}).entries
    with pytest.raises(DataError, match="the item has mix, vocals, dataset.streams asks for noisy, clean"):
        AudioDataset(entries, sample_rate=16000, streams=["noisy", "clean"])


def docs_steps_file() -> str:
    """The standalone steps file of docs/steps.md ("A steps file for your own data")."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "steps.md").read_text()
    section = text.split("## A steps file for your own data", 1)[1]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


def test_the_docs_paired_denoiser_trains_and_resumes_exactly(env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """The file docs/steps.md shows, as written, on paired files: random crops of both streams,
    and a run resumed after its first epoch ends with the weights of one never stopped."""
    import numpy as np

    (tmp_path / "conf" / "solver").mkdir(parents=True)
    (tmp_path / "conf" / "solver" / "denoise_steps.yaml").write_text(docs_steps_file())
    for split, count in (("train", 8), ("valid", 4)):
        for i in range(count):
            rng = np.random.default_rng([i, count])
            clean = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 800) * np.arange(24000) / 16000)
            for name, audio in (("clean", clean), ("noisy", clean + 0.1 * rng.standard_normal(24000))):
                (tmp_path / "wavs" / name / split).mkdir(parents=True, exist_ok=True)
                soundfile.write(str(tmp_path / "wavs" / name / split / f"{i}.wav"), audio, 16000)
        from baton.data.manifest import write_manifest
        from baton.data.pairs import scan_pairs

        pairs = scan_pairs({"noisy": tmp_path / "wavs" / "noisy" / split, "clean": tmp_path / "wavs" / "clean" / split})
        write_manifest(tmp_path / "data" / f"{split}.jsonl", pairs.entries)
    monkeypatch.chdir(tmp_path)  # the file's manifests are relative to where baton runs
    import signal

    from baton.config import compose
    from baton.solver.runtime import Interrupted

    def stop_after_the_first_train(self: ExtensibleSolver, stage: Any, metrics: dict[str, float]) -> None:
        if self.epoch == 1 and stage.value == "train":
            self.cadence.signal.received = signal.SIGTERM  # as SLURM's would: save, then stop

    def run(root: str) -> dict[str, torch.Tensor]:
        cfg = compose(["solver=denoise_steps", "optim.epochs=2", "optim.updates_per_epoch=3",
                       f"xp.root={tmp_path / root}", "logging.tensorboard=false"], str(tmp_path / "conf"))
        with ExtensibleSolver(cfg) as solver:
            history = solver.run()
            assert len(history) == 2 and history[-1]["valid"]["si_snr_in"] > 0
            return {k: v.clone() for k, v in solver.networks["denoiser"].state_dict().items()}

    straight = run("straight")
    with monkeypatch.context() as patch, pytest.raises(Interrupted):
        patch.setattr(ExtensibleSolver, "after_stage", stop_after_the_first_train)
        run("stopped")
    caplog.clear()
    resumed = run("stopped")  # the same XP: resumed from the checkpoint the stop wrote
    assert "resuming" in caplog.text
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key
