"""Reusable modules for the reference tasks. Only torch is imported here, never hydra or I/O."""

from baton.models.codec import (
    CodecOutput,
    CompressionModel,
    CompressionModelConfig,
    build_compression_model,
    load_preset,
)
from baton.models.quantization import EuclideanCodebook, QuantizedResult, ResidualVectorQuantizer
from baton.models.seanet import SEANetDecoder, SEANetEncoder

__all__ = [
    "CodecOutput",
    "CompressionModel",
    "CompressionModelConfig",
    "EuclideanCodebook",
    "QuantizedResult",
    "ResidualVectorQuantizer",
    "SEANetDecoder",
    "SEANetEncoder",
    "build_compression_model",
    "load_preset",
]
