"""Conditioning for generative models (AudioCraft style): per-item attributes, conditioners
that embed them, a fuser that places the embeddings, and the dropouts that make classifier-free
guidance possible. Configured by the `conditioner` config group."""

from .attributes import (
    AttributeDropout,
    ClassifierFreeGuidanceDropout,
    ConditioningAttributes,
    WavCondition,
    nullified,
)
from .conditioners import CharTextConditioner, Conditioner, LUTConditioner, MelSummaryConditioner
from .fuser import ConditionFuser, Fused
from .provider import Conditioning, ConditioningProvider, build_conditioning
from .registry import register_conditioner

__all__ = [
    "AttributeDropout", "CharTextConditioner", "ClassifierFreeGuidanceDropout", "ConditionFuser",
    "Conditioner", "Conditioning", "ConditioningAttributes", "ConditioningProvider", "Fused",
    "LUTConditioner", "MelSummaryConditioner", "WavCondition", "build_conditioning", "nullified",
    "register_conditioner",
]
