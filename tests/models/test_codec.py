import io
import math

import pytest
import torch

from baton.errors import ConfigError
from baton.models.codec import (
    CompressionModel,
    CompressionModelConfig,
    build_compression_model,
    load_preset,
)


def tiny_model(seed: int = 0, **overrides) -> CompressionModel:
    torch.manual_seed(seed)
    return build_compression_model({**load_preset("seanet_debug"), **overrides})


def sine_batch(batch: int = 4, length: int = 4000) -> torch.Tensor:
    t = torch.arange(length) / 16000
    freqs = torch.tensor([220.0, 330.0, 440.0, 550.0])[:batch, None, None]
    return 0.5 * torch.sin(2 * math.pi * freqs * t)


@pytest.mark.parametrize("length", [1, 31, 32, 33, 1001, 16000])
def test_reconstruction_has_the_input_shape_for_any_length(length):
    model = tiny_model()
    x = torch.randn(2, 1, length)
    out = model.train()(x)
    assert out.y.shape == x.shape
    assert out.codes.shape == (2, 4, math.ceil(length / 32))
    assert model.encode(x).shape == out.codes.shape


def test_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match=r"expected a waveform \[B, 1, T\]"):
        tiny_model()(torch.randn(2, 2, 100))


def test_frame_rate_hop_and_bandwidth_of_the_presets():
    debug, gpu = tiny_model(), build_compression_model(load_preset("seanet"))
    assert (debug.hop_length, debug.frame_rate, debug.bandwidth()) == (32, 500.0, 16.0)
    assert (gpu.hop_length, gpu.frame_rate, gpu.bandwidth()) == (320, 50.0, 6.0)
    assert gpu.bandwidth(n_q=2) == 1.0
    with torch.no_grad():
        assert gpu.eval()(torch.randn(1, 1, 3200)).y.shape == (1, 1, 3200)


def test_encode_decode_equals_forward_in_eval():
    model = tiny_model()
    model.train()(sine_batch())
    model.eval()
    x = torch.randn(2, 1, 1000)
    with torch.no_grad():
        out = model(x, n_q=3)
        codes = model.encode(x, n_q=3)
        torch.testing.assert_close(codes, out.codes, rtol=0, atol=0)
        torch.testing.assert_close(model.decode(codes, length=1000), out.y)
        assert model.decode(codes).shape[-1] == 32 * codes.shape[-1]


def test_reconstruction_loss_alone_trains_the_encoder_through_the_quantizer():
    model = tiny_model().train()
    x = sine_batch()
    (model(x).y - x).abs().mean().backward()
    for name, param in model.encoder.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_state_dict_round_trip_gives_identical_outputs():
    model = tiny_model()
    model.train()(sine_batch())
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    restored = tiny_model(seed=1)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.randn(2, 1, 700)
    model.eval(), restored.eval()
    with torch.no_grad():
        a, b = model(x), restored(x)
    torch.testing.assert_close(a.y, b.y, rtol=0, atol=0)
    torch.testing.assert_close(a.codes, b.codes, rtol=0, atol=0)


def train(model: CompressionModel, x: torch.Tensor, steps: int, lr: float = 3e-3) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.9))
    model.train()
    losses = []
    for _ in range(steps):
        out = model(x)
        l1 = (out.y - x).abs().mean()
        optimizer.zero_grad()
        (l1 + out.commit_loss).backward()
        optimizer.step()
        losses.append(l1.item())
    return losses


def test_training_is_deterministic_for_a_given_seed():
    x = sine_batch()
    first, second = tiny_model(seed=7), tiny_model(seed=7)
    torch.manual_seed(3)
    losses_first = train(first, x, steps=3)
    torch.manual_seed(3)
    losses_second = train(second, x, steps=3)
    assert losses_first == losses_second
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_overfits_one_batch_of_sines():
    model = tiny_model()
    x = sine_batch(batch=2, length=2048)
    losses = train(model, x, steps=40)
    # Outputting silence would score about 0.9 of the first loss; a codec that learns, ~0.15.
    assert min(losses[-5:]) < 0.3 * losses[0], losses


def test_unknown_and_missing_config_keys_are_named():
    cfg = load_preset("seanet_debug")
    with pytest.raises(
        ConfigError,
        match=r"unknown config key 'model.n_filter' \(did you mean 'model.n_filters'\?\)",
    ):
        build_compression_model({**cfg, "n_filter": 4})
    del cfg["bins"]
    with pytest.raises(ConfigError, match=r"missing config keys model.bins"):
        build_compression_model(cfg)


def test_every_preset_is_complete():
    from baton.models.codec import PRESET_DIR

    presets = list(PRESET_DIR.glob("seanet*.yaml"))  # the model group also holds the classifier
    assert presets
    for path in presets:
        CompressionModelConfig.from_mapping(load_preset(path.stem))
    with pytest.raises(ConfigError, match="unknown model preset 'nope'"):
        load_preset("nope")
