"""baton's networks, by the names a step config gives in `which_model`."""

from __future__ import annotations

from ..models.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator
from ..models.vocoder import MelVocoder
from .registry import register_network

register_network("mel_vocoder")(MelVocoder)
register_network("multi_period_discriminator")(MultiPeriodDiscriminator)
register_network("multi_scale_discriminator")(MultiScaleDiscriminator)
