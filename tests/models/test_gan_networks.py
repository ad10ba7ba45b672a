"""The GAN task's networks: the vocoder gives back exactly hop_length samples per mel frame;
the discriminators return one logit tensor and a list of feature maps per sub-discriminator."""

from __future__ import annotations

import pytest
import torch

from baton.models.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator
from baton.models.vocoder import MelVocoder


@pytest.mark.parametrize("rates", [(4, 4), (5, 3), (8, 8, 4)])
def test_vocoder_upsamples_by_the_product_of_its_rates(rates: tuple[int, ...]) -> None:
    vocoder = MelVocoder(n_mels=8, channels=16, upsample_rates=rates, resblock_kernels=(3,), resblock_dilations=(1,))
    wav = vocoder(torch.randn(2, 8, 10))
    assert vocoder.hop_length == torch.tensor(rates).prod().item()
    assert wav.shape == (2, 1, 10 * vocoder.hop_length) and wav.abs().max() <= 1


def test_discriminators_return_logits_and_feature_maps_per_sub_discriminator() -> None:
    wav = torch.randn(3, 1, 1001)  # not a multiple of any period
    logits, features = MultiPeriodDiscriminator(periods=(2, 3, 5), channels=(4, 8))(wav)
    assert len(logits) == len(features) == 3
    assert all(t.shape[0] == 3 for t in logits) and all(len(maps) == 3 for maps in features)  # 2 convs + post
    wav.requires_grad_(True)
    logits, features = MultiScaleDiscriminator(scales=2, channels=(8, 16))(wav)
    assert len(logits) == 2 and logits[1].shape[1] < logits[0].shape[1]  # the second sees pooled audio
    sum(t.sum() for t in logits).backward()
    assert wav.grad is not None
