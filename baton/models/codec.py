"""The neural audio codec: SEANet encoder -> residual vector quantizer -> SEANet decoder.

`CompressionModel` owns the length bookkeeping (pad to a multiple of the hop, trim back) so the
solver deals only in waveforms of any length. Sizes come from a flat mapping (`model:` in the
config, see `baton/conf/model/*.yaml`), checked by `CompressionModelConfig`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from baton.errors import ConfigError, did_you_mean
from baton.models.quantization import ResidualVectorQuantizer
from baton.models.seanet import SEANetDecoder, SEANetEncoder

PRESET_DIR = Path(__file__).resolve().parent.parent / "conf" / "model"


@dataclass
class CodecOutput:
    """What `CompressionModel.forward` returns.

    Attributes:
        y: [B, C, T] reconstruction, same shape as the input.
        codes: [B, K, F] int64 codes, F = ceil(T / hop_length), K = the n_q used.
        commit_loss: scalar commitment loss of the quantizer; add it to the training loss.
        bandwidth: kbps of `codes`.
    """

    y: torch.Tensor
    codes: torch.Tensor
    commit_loss: torch.Tensor
    bandwidth: float


class CompressionModel(nn.Module):
    """Waveform codec with a bitrate chosen at call time by the number of codebooks `n_q`.

    Args:
        encoder: waveform [B, C, T] -> latents [B, D, T / hop].
        quantizer: residual vector quantizer over D-dimensional latents.
        decoder: latents -> waveform, with the encoder's hop length.
        sample_rate: of the audio, in Hz (sets `frame_rate` and so the bandwidth).
        channels: audio channels expected on input.
    """

    def __init__(
        self,
        encoder: SEANetEncoder,
        quantizer: ResidualVectorQuantizer,
        decoder: SEANetDecoder,
        sample_rate: int,
        channels: int = 1,
    ) -> None:
        super().__init__()
        if encoder.hop_length != decoder.hop_length:
            raise ValueError(
                f"encoder hop {encoder.hop_length} != decoder hop {decoder.hop_length}"
            )
        self.encoder = encoder
        self.quantizer = quantizer
        self.decoder = decoder
        self.sample_rate = sample_rate
        self.channels = channels

    @property
    def hop_length(self) -> int:
        """Audio samples per code frame."""
        return self.encoder.hop_length

    @property
    def frame_rate(self) -> float:
        """Code frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def n_q(self) -> int:
        """Maximum number of codebooks."""
        return self.quantizer.n_q

    def bandwidth(self, n_q: int | None = None) -> float:
        """kbps with the first `n_q` codebooks (all when None)."""
        return self.quantizer.bandwidth(self.frame_rate, n_q)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.channels:
            raise ValueError(
                f"expected a waveform [B, {self.channels}, T], got shape {tuple(x.shape)}"
            )
        # Zeros on the right up to a whole number of frames; the caller trims the decoded tail.
        return F.pad(x, (0, -x.shape[-1] % self.hop_length))

    def forward(self, x: torch.Tensor, n_q: int | None = None) -> CodecOutput:
        """Encode, quantize with the first `n_q` codebooks (all when None) and decode.

        In training mode this also updates the codebooks (EMA, dead codes) of those `n_q`.
        """
        length = x.shape[-1]
        latents = self.encoder(self._pad(x))
        result = self.quantizer(latents, self.frame_rate, n_q)
        y = self.decoder(result.quantized)[..., :length]
        return CodecOutput(
            y=y, codes=result.codes, commit_loss=result.commit_loss, bandwidth=result.bandwidth
        )

    def encode(self, x: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Waveform [B, C, T] -> codes [B, n_q, ceil(T / hop_length)]."""
        return self.quantizer.encode(self.encoder(self._pad(x)), n_q)

    def decode(self, codes: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Codes [B, K, F] -> waveform [B, C, F * hop_length], trimmed to `length` when given."""
        wav = self.decoder(self.quantizer.decode(codes))
        return wav if length is None else wav[..., :length]


@dataclass(frozen=True)
class CompressionModelConfig:
    """Every key of a `model:` config for the codec; no defaults, the YAML presets hold them.

    SEANet keys are documented on `SEANetEncoder`, quantizer keys on `ResidualVectorQuantizer`
    and `EuclideanCodebook`.
    """

    sample_rate: int
    channels: int
    dimension: int
    n_filters: int
    ratios: list[int]
    n_residual_layers: int
    kernel_size: int
    last_kernel_size: int
    residual_kernel_size: int
    dilation_base: int
    compress: int
    causal: bool
    weight_norm: bool
    lstm: int
    final_activation: str | None
    n_q: int
    bins: int
    decay: float
    epsilon: float
    threshold_ema_dead_code: float
    kmeans_iters: int

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any], where: str = "model") -> CompressionModelConfig:
        """Check keys (unknown ones get a suggestion, missing ones are listed) and build.

        Raises:
            ConfigError: naming the offending `where.key`.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        for key in cfg:
            if key not in names:
                hint = did_you_mean(f"{where}.{key}", [f"{where}.{name}" for name in names])
                raise ConfigError(f"unknown config key '{where}.{key}'{hint}")
        missing = [name for name in names if name not in cfg]
        if missing:
            raise ConfigError(
                f"missing config keys {', '.join(f'{where}.{m}' for m in missing)}: "
                "start from a preset, e.g. model=seanet_debug"
            )
        values = {key: cfg[key] for key in names}
        values["ratios"] = [int(r) for r in values["ratios"]]
        return cls(**values)


def build_compression_model(cfg: Mapping[str, Any] | CompressionModelConfig) -> CompressionModel:
    """Build the codec from a flat `model:` mapping (e.g. the composed config's `cfg.model`)."""
    if not isinstance(cfg, CompressionModelConfig):
        cfg = CompressionModelConfig.from_mapping(cfg)
    seanet: dict[str, Any] = dict(
        channels=cfg.channels,
        dimension=cfg.dimension,
        n_filters=cfg.n_filters,
        ratios=cfg.ratios,
        n_residual_layers=cfg.n_residual_layers,
        kernel_size=cfg.kernel_size,
        last_kernel_size=cfg.last_kernel_size,
        residual_kernel_size=cfg.residual_kernel_size,
        dilation_base=cfg.dilation_base,
        compress=cfg.compress,
        causal=cfg.causal,
        weight_norm=cfg.weight_norm,
        lstm=cfg.lstm,
    )
    quantizer = ResidualVectorQuantizer(
        dimension=cfg.dimension,
        n_q=cfg.n_q,
        bins=cfg.bins,
        decay=cfg.decay,
        epsilon=cfg.epsilon,
        threshold_ema_dead_code=cfg.threshold_ema_dead_code,
        kmeans_iters=cfg.kmeans_iters,
    )
    return CompressionModel(
        SEANetEncoder(**seanet),
        quantizer,
        SEANetDecoder(**seanet, final_activation=cfg.final_activation),
        sample_rate=cfg.sample_rate,
        channels=cfg.channels,
    )


def load_preset(name: str) -> dict[str, Any]:
    """The `model:` mapping of preset `name` (a file in baton/conf/model/), for use outside Hydra."""
    from omegaconf import OmegaConf

    path = PRESET_DIR / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown model preset '{name}'; known: {', '.join(known)}")
    container = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    assert isinstance(container, dict)
    return {str(key): value for key, value in container.items()}
