import pytest
import torch

from baton.models.seanet import SEANetDecoder, SEANetEncoder

SMALL = dict(channels=1, dimension=16, n_filters=4, ratios=[4, 2, 2], n_residual_layers=2)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("frames", [1, 3, 50])
def test_lengths_are_exact_multiples_of_the_hop(causal, frames):
    torch.manual_seed(0)
    encoder = SEANetEncoder(**SMALL, causal=causal)
    decoder = SEANetDecoder(**SMALL, causal=causal)
    assert encoder.hop_length == decoder.hop_length == 16
    x = torch.randn(2, 1, frames * 16)
    latents = encoder(x)
    assert latents.shape == (2, 16, frames)
    assert decoder(latents).shape == x.shape


def test_encoder_refuses_a_length_that_is_not_a_multiple_of_the_hop():
    encoder = SEANetEncoder(**SMALL)
    with pytest.raises(ValueError, match="not a multiple of hop_length=16"):
        encoder(torch.randn(1, 1, 33))


def test_causal_model_ignores_the_future():
    torch.manual_seed(0)
    encoder = SEANetEncoder(**SMALL, causal=True, lstm=1)
    decoder = SEANetDecoder(**SMALL, causal=True, lstm=1)
    x = torch.randn(1, 1, 160)
    changed = x.clone()
    changed[..., 96:] = torch.randn(1, 1, 64)  # frames 6.. differ
    with torch.no_grad():
        z, z_changed = encoder(x), encoder(changed)
        y, y_changed = decoder(z), decoder(z_changed)
    torch.testing.assert_close(z[..., :6], z_changed[..., :6], rtol=0, atol=0)
    assert not torch.allclose(z[..., 6:], z_changed[..., 6:])
    torch.testing.assert_close(y[..., :96], y_changed[..., :96], rtol=0, atol=0)


def test_non_causal_model_looks_ahead():
    torch.manual_seed(0)
    encoder = SEANetEncoder(**SMALL, causal=False)
    x = torch.randn(1, 1, 160)
    changed = x.clone()
    changed[..., 96:] = 0
    with torch.no_grad():
        assert not torch.allclose(encoder(x)[..., 5], encoder(changed)[..., 5])


def test_weight_norm_is_optional():
    with_norm = SEANetEncoder(**SMALL, weight_norm=True)
    without = SEANetEncoder(**SMALL, weight_norm=False)
    assert any("parametrizations.weight.original0" in k for k in with_norm.state_dict())
    assert not any("parametrizations" in k for k in without.state_dict())
