"""Built-in losses. Each reads state keys and returns a scalar; the step sums `weight * loss`.

    l1, mse          between `real` and `fake`
    multi_res_stft   spectral convergence + log-magnitude L1 over several STFT resolutions
    mel              multi-scale log-mel L1 (the compression task's mel distance)
    sisnr            negative SI-SNR in dB (lower is better, as for every loss)
    generator_gan    adversarial loss of `fake` against `discriminator` (lsgan or hinge)
    discriminator_gan  the discriminator's loss on `real` and (detached) `fake`
    feature_matching L1 between the discriminator's feature maps of `real` and `fake`
    direct           a value a network returned itself (`key`), e.g. a commitment loss

GAN terms are summed over a discriminator's sub-discriminators and feature maps, as HiFi-GAN
does, so HiFi-GAN's weights (adversarial 1, feature matching 2, mel 45) carry over.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..metrics.audio import MelDistance, MultiResolutionSTFTLoss, si_snr
from .components import Loss, StepContext
from .registry import register_loss

GAN_TYPES = ("lsgan", "hinge")


class PairLoss(Loss):
    """A loss between state keys `real` and `fake`."""

    def __init__(self, real: str, fake: str) -> None:
        self.real, self.fake = real, fake

    def reads(self) -> list[str]:
        return [self.real, self.fake]

    def pair(self, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        where = f"step '{ctx.step}' loss '{self.name}'"
        return ctx.state.read(self.real, where), ctx.state.read(self.fake, where)


@register_loss("l1")
class L1Loss(PairLoss):
    def __call__(self, ctx: StepContext) -> torch.Tensor:
        real, fake = self.pair(ctx)
        return F.l1_loss(fake, real)


@register_loss("mse")
class MSELoss(PairLoss):
    def __call__(self, ctx: StepContext) -> torch.Tensor:
        real, fake = self.pair(ctx)
        return F.mse_loss(fake, real)


@register_loss("multi_res_stft")
class MultiResolutionSTFT(PairLoss):
    def __init__(
        self, real: str, fake: str, fft_sizes: Sequence[int] = (512, 1024, 2048),
        hop_sizes: Sequence[int] = (50, 120, 240), win_lengths: Sequence[int] = (240, 600, 1200),
    ) -> None:
        super().__init__(real, fake)
        self.module = MultiResolutionSTFTLoss(list(fft_sizes), list(hop_sizes), list(win_lengths))

    def __call__(self, ctx: StepContext) -> torch.Tensor:
        real, fake = self.pair(ctx)
        return self.module.to(fake.device)(fake.float(), real.float())


@register_loss("mel")
class MelLoss(PairLoss):
    def __init__(
        self, real: str, fake: str, scales: Sequence[int] = (256, 512, 1024), n_mels: int = 64,
        sample_rate: int | None = None,
    ) -> None:
        super().__init__(real, fake)
        self.scales, self.n_mels, self.sample_rate = list(scales), int(n_mels), sample_rate
        self.module: MelDistance | None = None

    def __call__(self, ctx: StepContext) -> torch.Tensor:
        real, fake = self.pair(ctx)
        if self.module is None:
            self.module = MelDistance(self.sample_rate or ctx.sample_rate, self.scales, self.n_mels)
        return self.module.to(fake.device)(fake.float(), real.float())


@register_loss("sisnr")
class NegativeSISNR(PairLoss):
    def __call__(self, ctx: StepContext) -> torch.Tensor:
        real, fake = self.pair(ctx)
        return -si_snr(fake.float(), real.float()).mean()


class AdversarialLoss(Loss):
    def __init__(self, discriminator: str, gan_type: str = "lsgan") -> None:
        if gan_type not in GAN_TYPES:
            raise ConfigError(f"gan_type '{gan_type}' is unknown; choose one of {', '.join(GAN_TYPES)}")
        self.discriminator, self.gan_type = discriminator, gan_type

    def networks(self) -> list[str]:
        return [self.discriminator]


@register_loss("generator_gan")
class GeneratorGANLoss(AdversarialLoss):
    """lsgan: (1 - D(fake))^2; hinge: -D(fake); summed over sub-discriminators."""

    def __init__(self, discriminator: str, fake: str, gan_type: str = "lsgan") -> None:
        super().__init__(discriminator, gan_type)
        self.fake = fake

    def reads(self) -> list[str]:
        return [self.fake]

    def __call__(self, ctx: StepContext) -> torch.Tensor:
        logits, _ = ctx.discriminate(self.discriminator, self.fake)
        terms = [(1 - t.float()).pow(2).mean() if self.gan_type == "lsgan" else -t.float().mean() for t in logits]
        return torch.stack(terms).sum()


@register_loss("discriminator_gan")
class DiscriminatorGANLoss(AdversarialLoss):
    """lsgan: (1 - D(real))^2 + D(fake)^2; hinge: relu(1 - D(real)) + relu(1 + D(fake)).
    `fake` is detached: this loss trains the discriminator only."""

    def __init__(self, discriminator: str, real: str, fake: str, gan_type: str = "lsgan") -> None:
        super().__init__(discriminator, gan_type)
        self.real, self.fake = real, fake

    def reads(self) -> list[str]:
        return [self.real, self.fake]

    def __call__(self, ctx: StepContext) -> torch.Tensor:
        (real_logits, _), (fake_logits, _) = ctx.discriminate_pair(self.discriminator, self.real, self.fake)
        terms = []
        for real, fake in zip(real_logits, fake_logits, strict=True):
            real, fake = real.float(), fake.float()
            if self.gan_type == "lsgan":
                terms.append((1 - real).pow(2).mean() + fake.pow(2).mean())
            else:
                terms.append(F.relu(1 - real).mean() + F.relu(1 + fake).mean())
        return torch.stack(terms).sum()


@register_loss("feature_matching")
class FeatureMatchingLoss(Loss):
    """Sum over feature maps of mean |D_l(fake) - D_l(real)|, the real side without gradient."""

    def __init__(self, discriminator: str, real: str, fake: str) -> None:
        self.discriminator, self.real, self.fake = discriminator, real, fake

    def networks(self) -> list[str]:
        return [self.discriminator]

    def reads(self) -> list[str]:
        return [self.real, self.fake]

    def __call__(self, ctx: StepContext) -> torch.Tensor:
        _, real_features = ctx.discriminate(self.discriminator, self.real)
        _, fake_features = ctx.discriminate(self.discriminator, self.fake)
        terms = [
            (fake.float() - real.detach().float()).abs().mean()
            for real_maps, fake_maps in zip(real_features, fake_features, strict=True)
            for real, fake in zip(real_maps, fake_maps, strict=True)
        ]
        if not terms:
            raise ConfigError(
                f"loss '{self.name}': discriminator '{self.discriminator}' returns no feature maps; "
                "return (logits, features) from its forward"
            )
        return torch.stack(terms).sum()


@register_loss("direct")
class DirectLoss(Loss):
    """A loss a network computed itself and an injector stored under `key` (its mean if not a scalar)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def reads(self) -> list[str]:
        return [self.key]

    def __call__(self, ctx: StepContext) -> torch.Tensor:
        value = ctx.state.read(self.key, f"step '{ctx.step}' loss '{self.name}'")
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise ConfigError(f"loss '{self.name}': state key '{self.key}' holds {type(value).__name__}, not a float tensor")
        return value.mean()
