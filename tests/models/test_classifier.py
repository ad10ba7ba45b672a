from __future__ import annotations

import math

import pytest
import torch

from baton.models.classifier import AudioClassifier, LogMel

SR = 16_000
SMALL = dict(num_classes=3, n_mels=32, channels=(4, 8, 8), embedding_dim=12)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions: on a busy CPU, waking torch's thread pool costs more than the maths."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_model(seed: int = 0) -> AudioClassifier:
    torch.manual_seed(seed)
    return AudioClassifier(**SMALL)


def test_log_mel_shapes_and_normalisation():
    mel = LogMel(SR, n_mels=40, hop_length=160)
    wav = torch.randn(3, 1, 4000)
    out = mel(wav)
    assert out.shape == (3, 40, 4000 // 160 + 1)
    assert mel(wav[:, 0]).shape == out.shape
    # Per-item normalisation: the recording gain is gone.
    torch.testing.assert_close(mel(wav * 0.01), out, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(out.mean((1, 2)), torch.zeros(3), rtol=0, atol=1e-4)


def test_log_mel_ignores_samples_past_lengths():
    mel = LogMel(SR, n_mels=32)
    wav = torch.randn(1, 3000)
    padded = torch.cat([wav, torch.randn(1, 1000)], dim=-1)  # garbage, not zeros
    frames = mel.frame_lengths(torch.tensor([3000])).item()
    alone = mel(wav, torch.tensor([3000]))
    inside = mel(padded, torch.tensor([3000]))
    torch.testing.assert_close(inside[..., :frames], alone[..., :frames])
    assert inside[..., frames:].abs().max() == 0


@pytest.mark.parametrize("shape", [(2, SR // 4), (2, 1, SR // 4), (1, 1, 1000)])
def test_logits_and_embedding_shapes(shape):
    model = small_model().eval()
    wav = torch.randn(*shape)
    assert model(wav).shape == (shape[0], 3)
    assert model.embed(wav).shape == (shape[0], 12)


def test_rejects_multichannel_audio():
    with pytest.raises(ValueError, match="mono"):
        small_model()(torch.randn(2, 2, 1000))


def with_running_statistics(model: AudioClassifier) -> AudioClassifier:
    """Fresh BatchNorm is the identity in eval mode, which would map padding to exactly 0 and
    hide a missing mask; a few train-mode passes give it real shifts."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, SR // 4))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.normal_(module.bias)
    return model.eval()


def test_padding_beyond_lengths_does_not_change_the_output():
    model = with_running_statistics(small_model())
    short, long = torch.randn(2345), torch.randn(4000)
    batch = torch.zeros(2, 1, 4000)
    batch[0, 0, :2345] = short
    batch[0, 0, 2345:] = 5.0  # padding that is not even silent
    batch[1, 0] = long
    lengths = torch.tensor([2345, 4000])
    with torch.no_grad():
        together = model(batch, lengths)
        alone = torch.cat([model(short[None]), model(long[None])])
        embedded = model.embed(batch, lengths)
    torch.testing.assert_close(together, alone, rtol=1e-3, atol=1e-4)
    assert embedded.shape == (2, 12)


def test_deterministic_and_batch_size_one_trains():
    wav = torch.randn(1, SR // 4)
    first, second = small_model(3).eval(), small_model(3).eval()
    torch.testing.assert_close(first(wav), second(wav), rtol=0, atol=0)
    first.train()
    first(wav).sum().backward()  # BatchNorm in train mode copes with one item


def test_gradient_reaches_every_parameter():
    model = small_model().train()
    wav = torch.randn(4, SR // 4)
    loss = torch.nn.functional.cross_entropy(model(wav, torch.tensor([4000, 3000, 2000, 1000])),
                                             torch.tensor([0, 1, 2, 0]))
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def tones(generator: torch.Generator, freqs: tuple[float, float], count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes of pure tones at random gain, phase and slight detuning."""
    labels = torch.arange(count) % 2
    base = torch.tensor(freqs)[labels] * (1 + 0.05 * torch.rand(count, generator=generator))
    phase = 2 * math.pi * torch.rand(count, 1, generator=generator)
    gain = 10 ** (-torch.rand(count, 1, generator=generator))
    t = torch.arange(SR // 8) / SR
    wav = gain * torch.sin(2 * math.pi * base[:, None] * t + phase)
    return wav + 0.01 * torch.randn(wav.shape, generator=generator), labels


def test_overfits_two_tone_classes():
    torch.manual_seed(0)
    model = AudioClassifier(num_classes=2, n_mels=32, channels=(8, 16), embedding_dim=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        wav, labels = tones(generator, (300.0, 2000.0), 16)
        loss = torch.nn.functional.cross_entropy(model(wav), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    wav, labels = tones(generator, (300.0, 2000.0), 32)
    model.eval()
    with torch.no_grad():
        accuracy = (model(wav).argmax(-1) == labels).float().mean().item()
    assert accuracy == 1.0


def test_features_stay_float32_under_autocast():
    model = small_model().eval()
    wav = torch.randn(2, 4000)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        features = model.features(wav.bfloat16())
        logits = model(wav.bfloat16())
    assert features.dtype == torch.float32
    torch.testing.assert_close(features, model.features(wav), rtol=0, atol=0.05)
    assert logits.shape == (2, 3)
