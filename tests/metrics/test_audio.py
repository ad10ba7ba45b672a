import math

import pytest
import torch

from baton.metrics.audio import MelDistance, MultiResolutionSTFTLoss, mel_filterbank, si_snr

SR = 16_000


def tone(freq: float, seconds: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return torch.sin(2 * math.pi * freq * t)


def with_noise_at(reference: torch.Tensor, snr_db: float, seed: int = 0) -> torch.Tensor:
    noise = torch.randn(reference.shape, generator=torch.Generator().manual_seed(seed))
    noise -= noise.mean()
    noise -= (noise @ reference) / (reference @ reference) * reference  # orthogonal to the reference
    noise *= reference.norm() / noise.norm() / 10 ** (snr_db / 20)
    return reference + noise


def test_si_snr_measures_the_noise_level_and_ignores_scale():
    reference = tone(440.0)
    estimate = with_noise_at(reference, 10.0)

    value = si_snr(estimate[None], reference[None])
    assert value.shape == (1,)
    assert value.item() == pytest.approx(10.0, abs=0.05)
    assert si_snr(3.0 * estimate[None], reference[None]).item() == pytest.approx(value.item(), abs=1e-3)
    assert si_snr(reference[None], reference[None]).item() > 60


def test_si_snr_with_lengths_ignores_padding_and_matches_unpadded_items():
    short, long = tone(300.0, 0.25), tone(500.0, 0.5)
    est_short, est_long = with_noise_at(short, 5.0), with_noise_at(long, 20.0)
    padded_est = torch.zeros(2, 1, long.numel())
    padded_ref = torch.zeros(2, 1, long.numel())
    padded_est[0, 0, : short.numel()], padded_ref[0, 0, : short.numel()] = est_short, short
    padded_est[1, 0], padded_ref[1, 0] = est_long, long
    padded_est[0, 0, short.numel():] = 0.7  # junk a model may output in the padding
    lengths = torch.tensor([short.numel(), long.numel()])

    values = si_snr(padded_est, padded_ref, lengths)

    assert values[0].item() == pytest.approx(si_snr(est_short[None], short[None]).item(), abs=1e-3)
    assert values[1].item() == pytest.approx(20.0, abs=0.05)
    assert si_snr(padded_est, padded_ref, lengths, reduction="mean").item() == pytest.approx(values.mean().item())


def test_mel_filters_peak_at_the_frequency_of_a_tone():
    bank = mel_filterbank(n_fft=1024, n_mels=40, sample_rate=SR)
    spectrum = torch.stft(tone(1000.0), 1024, window=torch.hann_window(1024), return_complex=True).abs().mean(-1)

    energies = bank @ spectrum
    centres_hz = bank.argmax(dim=1) * SR / 1024
    assert energies.argmax() == (centres_hz - 1000.0).abs().argmin()
    spacing = centres_hz.diff()
    assert spacing[-5:].mean() > 3 * spacing[:5].mean()  # mel scale: wider filters up high
    assert bank.shape[1] == 513 and (bank >= 0).all() and bank.max() <= 1.0
    assert (bank.sum(1) > 0).all()  # no dead channels, even when small FFTs would leave some empty
    assert mel_filterbank(n_fft=128, n_mels=64, sample_rate=SR).shape[0] < 64


@pytest.mark.parametrize("loss", [MultiResolutionSTFTLoss(), MelDistance(SR)], ids=["stft", "mel"])
def test_spectral_losses_grow_with_distortion_and_give_finite_gradients(loss: torch.nn.Module):
    reference = torch.stack([tone(220.0), tone(880.0)])[:, None]
    lengths = torch.tensor([8000, 6000])
    reference[1, :, 6000:] = 0.0

    distances = [loss(with_noise_at(reference.flatten(), snr).view_as(reference), reference, lengths).item()
                 for snr in (30.0, 10.0, 0.0)]
    assert loss(reference, reference, lengths).item() == pytest.approx(0.0, abs=1e-4)
    assert distances[0] < distances[1] < distances[2]

    # Near-silence, as from a freshly initialised model: the worst case for log and sqrt.
    estimate = (1e-6 * torch.randn(reference.shape)).requires_grad_()
    per_item = loss(estimate, reference, lengths, reduction="none")
    assert per_item.shape == (2,)
    per_item.mean().backward()
    assert torch.isfinite(estimate.grad).all() and estimate.grad.abs().sum() > 0


@pytest.mark.parametrize("loss", [MultiResolutionSTFTLoss(), MelDistance(SR)], ids=["stft", "mel"])
def test_spectral_losses_ignore_what_is_in_the_padding(loss: torch.nn.Module):
    reference = tone(330.0)[None, None].repeat(2, 1, 1)
    lengths = torch.tensor([8000, 5000])
    reference[1, :, 5000:] = 0.0
    estimate = with_noise_at(reference.flatten(), 15.0).view_as(reference)
    junk = estimate.clone()
    junk[1, :, 5000:] = torch.randn(3000)

    assert torch.allclose(loss(junk, reference, lengths, reduction="none"),
                          loss(estimate, reference, lengths, reduction="none"))
    assert not torch.allclose(loss(junk, reference, reduction="none"), loss(estimate, reference, reduction="none"))


def test_metrics_accept_batch_by_time_and_short_signals():
    reference = torch.randn(3, 400)
    estimate = reference + 0.1 * torch.randn(3, 400)
    assert si_snr(estimate, reference).shape == (3,)
    assert MultiResolutionSTFTLoss()(estimate, reference).dim() == 0
    assert torch.isfinite(MelDistance(SR)(estimate, reference))


def test_half_precision_model_outputs_are_measured_in_float32():
    reference = tone(440.0)[None, None]
    estimate = with_noise_at(reference.flatten(), 20.0).view_as(reference).bfloat16()
    for metric in (si_snr, MultiResolutionSTFTLoss(), MelDistance(SR)):
        assert metric(estimate, reference).dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metrics_run_on_the_device_of_their_inputs():
    reference = torch.stack([tone(220.0), tone(660.0)])[:, None]
    estimate = with_noise_at(reference.flatten(), 10.0).view_as(reference)
    lengths = torch.tensor([8000, 5000])
    for metric in (si_snr, MultiResolutionSTFTLoss(), MelDistance(SR)):
        on_cpu = metric(estimate, reference, lengths)
        on_gpu = metric(estimate.cuda(), reference.cuda(), lengths.cuda())
        assert on_gpu.device.type == "cuda"
        assert torch.allclose(on_gpu.cpu(), on_cpu, rtol=1e-3, atol=1e-3)
