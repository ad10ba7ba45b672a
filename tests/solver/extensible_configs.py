"""Small GAN configs for the extensible solver's tests: `solver=gan/debug` shrunk so that an
update takes milliseconds, with sections replaced as a test needs."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from baton.config import compose

TINY_NETWORKS: dict[str, Any] = {
    "generator": {"type": "generator", "which_model": "mel_vocoder", "n_mels": 16, "channels": 16,
                  "upsample_rates": [4, 4], "resblock_kernels": [3], "resblock_dilations": [1]},
    "mpd": {"type": "discriminator", "which_model": "multi_period_discriminator", "periods": [2, 3],
            "channels": [4, 8]},
}

TINY_STEPS: dict[str, Any] = {
    "generator": {
        "training": "generator",
        "injectors": {
            "mel": {"type": "mel", "in": "wav", "out": "mel", "n_fft": 64, "hop_length": 16, "n_mels": 16},
            "vocoder": {"type": "generator", "generator": "generator", "in": "mel", "out": "fake"},
        },
        "losses": {
            "l1": {"type": "l1", "real": "wav", "fake": "fake", "weight": 10.0},
            "adv": {"type": "generator_gan", "discriminator": "mpd", "fake": "fake"},
            "fm": {"type": "feature_matching", "discriminator": "mpd", "real": "wav", "fake": "fake", "weight": 2.0},
        },
    },
    "discriminator": {
        "training": "mpd",
        "losses": {"disc": {"type": "discriminator_gan", "discriminator": "mpd", "real": "wav", "fake": "fake"}},
    },
}

SHORT = ["solver=gan/debug", "optim.epochs=1", "optim.updates_per_epoch=4", "dataset.batch_size=4",
         "dataset.segment_duration=0.064", "logging.tensorboard=false", "num_threads=1",
         "generate.num_samples=2", "dataset.valid.num_samples=8"]


def tiny_gan(*overrides: str, networks: dict[str, Any] | None = None, steps: dict[str, Any] | None = None,
             evaluators: dict[str, Any] | None = None) -> Any:
    """The composed config with tiny networks and steps (or the ones given)."""
    cfg = compose([*SHORT, *overrides])
    cfg.networks = OmegaConf.create(networks if networks is not None else TINY_NETWORKS)
    cfg.steps = OmegaConf.create(steps if steps is not None else TINY_STEPS)
    cfg.evaluators = OmegaConf.create(evaluators if evaluators is not None else
                                      {"mel_distance": {"type": "mel_distance", "real": "wav", "fake": "fake",
                                                        "scales": [64, 128]}})
    return cfg
