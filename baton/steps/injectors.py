"""Built-in injectors: each reads state keys (`in`) and writes new ones (`out`).

    generator   run a network on the inputs (`grad: false` to run it without autograd)
    constant    zeros / ones / randn shaped like the input
    noise       Gaussian noise times `scale`, shaped like the input (or added to it: `add: true`)
    detach      the input without its graph
    slice       one time crop, the same for every input (`factors` when their rates differ)
    augment     random gain, polarity and time shift per item
    mel         log-mel spectrogram [batch, n_mels, frames], frames = samples / hop_length

Random draws come from torch's global generator, which the checkpoint holds: a resumed run
draws the same crops and noise. Outside training (valid, evaluate, generate) `slice` crops from
the start, `augment` passes its input through, and `noise` / `constant: randn` draw from a seed
per item (the run's seed and the item's place in its dataset), so every epoch evaluates on the
same noisy set (`fixed_eval: false`: fresh draws each time, as in training).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import torch

from ..data.rng import derive_seed
from ..errors import ConfigError
from ..metrics.audio import mel_filterbank
from .components import Injector, StepContext
from .registry import register_injector


@register_injector("generator")
class NetworkInjector(Injector):
    """`out = generator(*in)`. A network returning a tuple fills several outputs in order; one
    returning a dict or an object fills them by `fields` (e.g. `fields: [y, commit_loss]`)."""

    num_inputs = None
    num_outputs = None

    def __init__(self, generator: str, grad: bool = True, fields: Sequence[str] | None = None) -> None:
        self.generator = generator
        self.grad = grad
        self.fields = list(fields) if fields is not None else None

    def networks(self) -> list[str]:
        return [self.generator]

    def check_io(self, where: str) -> None:
        super().check_io(where)
        if not self.inputs:
            raise ConfigError(f"{where}: needs input key(s) in 'in'")
        if self.fields is not None and len(self.fields) != len(self.outputs):
            raise ConfigError(f"{where}: 'fields' {self.fields} and 'out' {self.outputs} differ in length")

    def __call__(self, ctx: StepContext, *inputs: Any) -> Any:
        with torch.set_grad_enabled(self.grad and torch.is_grad_enabled()):
            result = ctx.run_network(self.generator, *inputs)
        if self.fields is not None:
            pick = result.__getitem__ if isinstance(result, dict) else lambda f: getattr(result, f)
            picked = [pick(field) for field in self.fields]
            return picked[0] if len(picked) == 1 else picked
        if len(self.outputs) > 1:
            if not isinstance(result, (tuple, list)) or len(result) < len(self.outputs):
                raise ConfigError(
                    f"injector '{self.name}': network '{self.generator}' returned {type(result).__name__}, "
                    f"not {len(self.outputs)} values for {self.outputs}; set 'fields' or fewer outputs"
                )
            return list(result[: len(self.outputs)])
        return result


def randn_like(ctx: StepContext, x: torch.Tensor, salt: str, fixed_eval: bool) -> torch.Tensor:
    """N(0, 1) shaped like `x`: from the global generator in training, from each item's seed
    (salted by the injector's name, so two injectors draw differently) outside it."""
    seeds = ctx.state.item_seeds if fixed_eval and not ctx.training else None
    if seeds is None or len(seeds) != x.shape[0]:
        return torch.randn(x.shape, dtype=x.dtype).to(x.device)
    salted = zlib.crc32(salt.encode())
    rows = [torch.randn(x.shape[1:], dtype=x.dtype, generator=torch.Generator().manual_seed(derive_seed(seed, salted)))
            for seed in seeds]
    return torch.stack(rows).to(x.device)


@register_injector("constant")
class ConstantInjector(Injector):
    """A tensor like the input, of zeros, ones, or standard normal values (`value`)."""

    def __init__(self, value: str = "zeros", fixed_eval: bool = True) -> None:
        if value not in ("zeros", "ones", "randn"):
            raise ConfigError(f"value '{value}' is unknown; choose zeros, ones or randn")
        self.value, self.fixed_eval = value, fixed_eval

    def __call__(self, ctx: StepContext, like: torch.Tensor) -> torch.Tensor:
        if self.value == "randn":
            return randn_like(ctx, like, self.name, self.fixed_eval)
        return torch.zeros_like(like) if self.value == "zeros" else torch.ones_like(like)


@register_injector("noise")
class NoiseInjector(Injector):
    """`scale * N(0, 1)` shaped like the input; with `add: true`, the input plus that noise."""

    def __init__(self, scale: float = 1.0, add: bool = False, fixed_eval: bool = True) -> None:
        self.scale, self.add, self.fixed_eval = float(scale), add, fixed_eval

    def __call__(self, ctx: StepContext, x: torch.Tensor) -> torch.Tensor:
        noise = randn_like(ctx, x, self.name, self.fixed_eval) * self.scale
        return x + noise if self.add else noise


@register_injector("detach")
class DetachInjector(Injector):
    def __call__(self, ctx: StepContext, x: torch.Tensor) -> torch.Tensor:
        return x.detach()


@register_injector("slice")
class SliceInjector(Injector):
    """The same crop of `length` units out of every input (along the last axis).

    `factors` gives each input's samples per unit when their rates differ (a mel's frames and
    its waveform: `factors: [1, 256]` with length in frames). `random: false` crops from 0.
    """

    num_inputs = None
    num_outputs = "inputs"

    def __init__(self, length: int, factors: Sequence[int] | None = None, random: bool = True) -> None:
        self.length = int(length)
        self.factors = [int(f) for f in factors] if factors is not None else None
        self.random = random

    def check_io(self, where: str) -> None:
        super().check_io(where)
        if self.factors is not None and len(self.factors) != len(self.inputs):
            raise ConfigError(f"{where}: 'factors' needs one entry per input {self.inputs}")

    def __call__(self, ctx: StepContext, *inputs: torch.Tensor) -> list[torch.Tensor]:
        factors = self.factors or [1] * len(inputs)
        units = min(x.shape[-1] // f for x, f in zip(inputs, factors, strict=True))
        if units < self.length:
            raise ConfigError(
                f"injector '{self.name}': inputs hold {units} units, fewer than length={self.length}; "
                "lower the length or use longer segments"
            )
        start = int(torch.randint(0, units - self.length + 1, ())) if self.random and ctx.training else 0
        return [x[..., start * f:(start + self.length) * f] for x, f in zip(inputs, factors, strict=True)]


@register_injector("augment")
class AugmentInjector(Injector):
    """Per item: gain uniform in `gain_db` (dB), polarity flipped with probability
    `polarity`, circular time shift of up to `shift` samples either way."""

    def __init__(self, gain_db: Sequence[float] = (0.0, 0.0), polarity: float = 0.0, shift: int = 0) -> None:
        low, high = (float(g) for g in gain_db)
        self.gain_db, self.polarity, self.shift = (low, high), float(polarity), int(shift)

    def __call__(self, ctx: StepContext, x: torch.Tensor) -> torch.Tensor:
        if not ctx.training:
            return x
        batch = x.shape[0]
        low, high = self.gain_db
        gain_db = low + (high - low) * torch.rand(batch)
        sign = torch.where(torch.rand(batch) < self.polarity, -1.0, 1.0)
        scale = (10 ** (gain_db / 20) * sign).to(x)
        out = x * scale.view(batch, *([1] * (x.dim() - 1)))
        if self.shift:
            shifts = torch.randint(-self.shift, self.shift + 1, (batch,)).tolist()
            out = torch.stack([item.roll(s, dims=-1) for item, s in zip(out, shifts, strict=True)])
        return out


@register_injector("mel")
class MelInjector(Injector):
    """Log-mel spectrogram of a [batch, 1, time] (or [batch, time]) waveform: [batch, n_mels,
    time // hop_length]. The waveform is reflect-padded by (n_fft - hop_length) / 2 on each side,
    so when `time` is a multiple of hop_length, a vocoder that upsamples by hop_length gives back
    exactly `time` samples (crop with `slice` otherwise)."""

    def __init__(
        self, n_fft: int = 1024, hop_length: int = 256, n_mels: int = 80, sample_rate: int | None = None,
        f_min: float = 0.0, f_max: float | None = None, floor: float = 1e-5,
    ) -> None:
        if (n_fft - hop_length) % 2:
            raise ConfigError(f"n_fft - hop_length must be even, got {n_fft} - {hop_length}")
        self.n_fft, self.hop_length, self.n_mels = int(n_fft), int(hop_length), int(n_mels)
        self.sample_rate, self.f_min, self.f_max, self.floor = sample_rate, f_min, f_max, floor
        self._cache: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor]] = {}

    def _bank(self, x: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = (x.device, x.dtype, sample_rate)
        if key not in self._cache:
            bank = mel_filterbank(self.n_fft, self.n_mels, sample_rate, self.f_min, self.f_max, drop_empty=False)
            self._cache[key] = (bank.to(x), torch.hann_window(self.n_fft).to(x))
        return self._cache[key]

    def __call__(self, ctx: StepContext, wav: torch.Tensor) -> torch.Tensor:
        return log_mel(wav, self, self.sample_rate or ctx.sample_rate)


def log_mel(wav: torch.Tensor, spec: MelInjector, sample_rate: int) -> torch.Tensor:
    x = wav.float().reshape(-1, wav.shape[-1]) if wav.dim() == 3 and wav.shape[1] == 1 else wav.float()
    if x.dim() != 2:
        raise ConfigError(f"mel injector '{spec.name}': expects mono audio [batch, 1, time], got {list(wav.shape)}")
    bank, window = spec._bank(x, sample_rate)
    pad = (spec.n_fft - spec.hop_length) // 2
    x = torch.nn.functional.pad(x[:, None], (pad, pad), mode="reflect")[:, 0]
    stft = torch.stft(x, spec.n_fft, spec.hop_length, window=window, center=False, return_complex=True)
    magnitude = stft.abs()
    return torch.matmul(bank, magnitude).clamp_min(spec.floor).log()
