"""Each packaged metric on a known pair: identical signals score at its ceiling, the same signal
with white noise at 0 dB SNR scores clearly lower, and the value is the package's own, called
directly on the same arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from baton.metrics.item_metrics import build_metric

from .signals import voiced, with_noise

# name: (the rate fed in, the ceiling, how close to it identical signals score, noisy below)
KNOWN_PAIRS = {
    "visqol": (48_000, 4.73, 0.02, 3.5),
    "visqol_speech": (16_000, 5.0, 0.5, 3.5),
    "pesq": (16_000, 4.64, 0.01, 2.0),
    "stoi": (16_000, 1.0, 1e-6, 0.9),
    "speaker_sim": (16_000, 1.0, 1e-4, 0.95),
}


def direct(name: str, estimate: np.ndarray, reference: np.ndarray, rate: int) -> float:
    """The package called as its README shows, without baton."""
    if name.startswith("visqol"):
        from visqol import VisqolApi

        api = VisqolApi()
        if name == "visqol":
            api.create(mode="audio")
        else:
            api.create(mode="speech", use_lattice_model=True)
        return api.measure_from_arrays(reference, estimate, rate).moslqo
    if name == "pesq":
        from pesq import pesq

        return pesq(rate, reference, estimate, "wb")
    if name == "stoi":
        from pystoi import stoi

        return stoi(reference, estimate, rate)
    if name == "speaker_sim":
        from resemblyzer import VoiceEncoder, preprocess_wav

        encoder = VoiceEncoder("cpu", verbose=False)
        a, b = (encoder.embed_utterance(preprocess_wav(w, source_sr=rate)) for w in (estimate, reference))
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    raise KeyError(name)


# ViSQOL (audio mode, 48 kHz) and the speaker encoder take 15-20 s of CPU each: `make test-slow`.
COSTLY = {"visqol", "speaker_sim"}


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.slow) if name in COSTLY else name for name in sorted(KNOWN_PAIRS)]
)
def test_ceiling_noise_and_the_package_value(name: str) -> None:
    rate, ceiling, tolerance, noisy_below = KNOWN_PAIRS[name]
    reference = voiced(1.5, rate)
    noisy = with_noise(reference, 0.0)
    metric = build_metric(name)

    scores = metric(torch.stack([reference, noisy]), torch.stack([reference, reference]), None, rate)

    assert scores.shape == (2,) and scores.dtype == torch.float64
    assert scores[0].item() == pytest.approx(ceiling, abs=tolerance)
    assert scores[1].item() < noisy_below < scores[0].item()
    expected = direct(name, noisy.double().numpy(), reference.double().numpy(), rate)
    assert scores[1].item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow  # DNSMOS loops every clip to 9 s: about 2 s of CPU per item
def test_dnsmos_prefers_the_clean_signal_and_is_the_packages_value() -> None:
    from speechmos import dnsmos

    reference = voiced(1.0, 16_000)
    noisy = with_noise(reference, 0.0)
    scores = build_metric("dnsmos")(torch.stack([reference, noisy]), torch.zeros(2, 16_000), None, 16_000)

    assert 1.0 <= scores[1].item() < scores[0].item() <= 5.0
    expected = dnsmos.run(np.clip(noisy.double().numpy(), -1, 1), 16_000)["ovrl_mos"]
    assert scores[1].item() == pytest.approx(expected, rel=1e-6)


def test_pesq_resamples_what_it_is_given_to_16_khz() -> None:
    metric = build_metric("pesq")
    at_16k, at_48k = voiced(1.5, 16_000), voiced(1.5, 48_000)

    native = metric(with_noise(at_16k, 10.0)[None], at_16k[None], None, 16_000).item()
    resampled = metric(with_noise(at_48k, 10.0)[None], at_48k[None], None, 48_000).item()

    assert metric(at_48k[None], at_48k[None], None, 48_000).item() == pytest.approx(4.64, abs=0.01)
    assert resampled == pytest.approx(native, abs=0.15)


def test_padding_and_channels_are_not_scored() -> None:
    metric = build_metric("stoi")
    reference = voiced(1.0, 16_000)
    estimate = with_noise(reference, 5.0)
    alone = metric(estimate[None], reference[None], None, 16_000).item()

    # The item padded with loud noise past its length, in a stereo batch of two equal channels.
    padded_ref, padded_est = torch.rand(2, 2, 24_000), torch.rand(2, 2, 24_000)
    padded_ref[0, :, :16_000], padded_est[0, :, :16_000] = reference, estimate
    scores = metric(padded_est, padded_ref, torch.tensor([16_000, 24_000]), 16_000)

    assert scores[0].item() == pytest.approx(alone, rel=1e-6)


@pytest.mark.parametrize("name", ["visqol", "visqol_speech", "stoi"])
def test_an_item_too_short_to_score_is_one_line(name: str) -> None:
    from baton.metrics.item_metrics import Unscorable

    short = voiced(0.5, 16_000)
    with pytest.raises(Unscorable) as caught:
        build_metric(name)(short[None], short[None], None, 16_000)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"metric '{name}' cannot score an item of 0.50 s (")
    assert message.endswith(f"evaluate longer items, or drop {name} from evaluate.metrics")
