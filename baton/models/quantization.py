"""Residual vector quantization (RVQ) with EMA codebooks, as in SoundStream and EnCodec.

Each of the K codebooks quantizes what the previous ones left over, so the first k codebooks
alone give a coarser but valid code: the bitrate is chosen at inference by how many codebooks
are kept (`n_q`), without retraining.

Why EMA codebooks: the nearest-neighbour lookup has no gradient, so instead of learning the
codebooks with a loss, each code vector tracks the running mean of the encoder outputs assigned
to it (k-means done online). This is steadier than a codebook loss and needs no learning rate.

Why dead-code replacement: a code that stops being chosen never moves again under EMA, and the
bits spent on it are wasted. Codes whose running assignment count falls below a threshold are
moved onto random encoder outputs of the current batch, where they are likely to be used.

All codebook state lives in buffers (codebook, cluster sizes, running sums, the initialised
flag), so `state_dict` captures it exactly and a resumed run continues bit for bit. The only
randomness (initial and replacement vectors) is drawn from torch's global RNG, which the
checkpoint also captures. Under DDP, the per-batch statistics are summed across ranks before
the EMA step, and random draws are broadcast from rank 0, so every rank keeps identical
codebooks without relying on DDP's buffer broadcast. The initial k-means and the replacement
vectors are drawn from the global batch, gathered in the order one process would hold it, so a
run on several ranks trains the same codec as one process with the same global batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from baton.distrib import is_distributed


@dataclass
class QuantizedResult:
    """What the quantizer returns.

    Attributes:
        quantized: [B, D, T] quantized latents; in training mode the straight-through estimator
            routes its gradient to the quantizer's input unchanged.
        codes: [B, K, T] int64 code indices, K = the n_q used.
        bandwidth: bitrate in kbps of these codes at the given frame rate.
        commit_loss: scalar, mean over codebooks of ||residual - code||^2; its gradient pulls
            the encoder output towards the codebooks. Add it to the training loss.
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    bandwidth: float
    commit_loss: torch.Tensor


def _sample_vectors(samples: torch.Tensor, num: int) -> torch.Tensor:
    """`num` rows of `samples` drawn at random (without replacement when there are enough)."""
    n = samples.shape[0]
    if n >= num:
        index = torch.randperm(n, device=samples.device)[:num]
    else:
        index = torch.randint(0, n, (num,), device=samples.device)
    return samples[index]


def _sum_over_ranks_(*tensors: torch.Tensor) -> None:
    if is_distributed():
        for tensor in tensors:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)


def _global_batch(x: torch.Tensor) -> torch.Tensor:
    """Every rank's items [B, ...] in the order a single process would hold them. Collective.

    Samplers stride the global order over ranks (rank r takes items r, r + W, ...), so item i of
    rank r is item i * W + r of the global batch. Ranks whose batches differ in shape (variable
    lengths) keep their own items: the draws are then rank 0's, as broadcast below.
    """
    if not is_distributed():
        return x
    world = dist.get_world_size()
    shape = torch.tensor(x.shape, dtype=torch.float64, device=x.device)
    shapes = [torch.empty_like(shape) for _ in range(world)]
    dist.all_gather(shapes, shape)
    if any(not torch.equal(other, shape) for other in shapes):
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous())
    return torch.stack(parts, dim=1).flatten(0, 1)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """Latents [B, D, T] as rows [B * T, D]."""
    return x.transpose(1, 2).reshape(-1, x.shape[1])


def _from_rank_zero_(*tensors: torch.Tensor) -> None:
    if is_distributed():
        for tensor in tensors:
            dist.broadcast(tensor, src=0)


class EuclideanCodebook(nn.Module):
    """One codebook of `bins` vectors of size `dim`, learned by EMA with dead-code replacement.

    Args:
        dim: size of the vectors.
        bins: number of code vectors.
        decay: EMA decay of the cluster sizes and sums (closer to 1 = slower, steadier).
        epsilon: Laplace smoothing of the cluster sizes, so an empty cluster never divides by 0.
        threshold_ema_dead_code: a code whose EMA assignment count (per global batch) drops
            below this is replaced by a random vector of the current batch. 0 disables it.
        kmeans_iters: k-means iterations on the first training batch to initialise the
            codebook (0 = random batch vectors only).
    """

    initialized: torch.Tensor
    embed: torch.Tensor
    cluster_size: torch.Tensor
    embed_sum: torch.Tensor

    def __init__(
        self,
        dim: int,
        bins: int,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        threshold_ema_dead_code: float = 2.0,
        kmeans_iters: int = 10,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.bins = bins
        self.decay = decay
        self.epsilon = epsilon
        self.threshold_ema_dead_code = threshold_ema_dead_code
        self.kmeans_iters = kmeans_iters
        # A float flag rather than a bool: every collective backend can broadcast it.
        self.register_buffer("initialized", torch.zeros(()))
        self.register_buffer("embed", torch.zeros(bins, dim))
        self.register_buffer("cluster_size", torch.zeros(bins))
        self.register_buffer("embed_sum", torch.zeros(bins, dim))

    def _assign(self, flat: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
        # argmin ||x - e||^2 = argmin (||e||^2 - 2 x.e): ||x||^2 is the same for every code.
        scores = embed.pow(2).sum(1) - 2 * flat @ embed.t()
        return scores.argmin(dim=1)

    def _cluster_stats(
        self, flat: torch.Tensor, codes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if flat.device.type == "cpu":
            # On CPU index_add_ is deterministic and 30x faster than the one-hot product below
            # (a [rows, bins] matrix per codebook per update: a fifth of a small codec's step).
            counts = torch.bincount(codes, minlength=self.bins).to(flat.dtype)
            return counts, flat.new_zeros(self.bins, flat.shape[1]).index_add_(0, codes, flat)
        # On CUDA a one-hot matmul rather than index_add_: it is deterministic (no atomics).
        onehot = F.one_hot(codes, self.bins).to(flat.dtype)
        return onehot.sum(0), onehot.t() @ flat

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        everyone = _global_batch(x)
        flat = _rows(everyone)
        embed = _sample_vectors(flat, self.bins)
        for _ in range(self.kmeans_iters):
            counts, sums = self._cluster_stats(flat, self._assign(flat, embed))
            # An empty cluster keeps its vector; dead-code replacement deals with it later.
            embed = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], embed)
        self.embed.copy_(embed)
        _from_rank_zero_(self.embed)
        # Counts over the global batch, on the scale the EMA and the dead-code threshold use.
        counts, _ = self._cluster_stats(flat, self._assign(flat, self.embed))
        if everyone is x:  # only this rank's items: add the others' counts
            _sum_over_ranks_(counts)
        self.cluster_size.copy_(counts)
        # Keep the invariant embed = embed_sum / cluster_size, so the first EMA step does not
        # shrink the codebook.
        self.embed_sum.copy_(self.embed * self.cluster_size[:, None])
        self.initialized.fill_(1.0)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        counts, sums = self._cluster_stats(flat, codes)
        _sum_over_ranks_(counts, sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.bins * self.epsilon) * total
        self.embed.copy_(self.embed_sum / smoothed[:, None])

    @torch.no_grad()
    def _replace_dead_codes(self, x: torch.Tensor) -> None:
        if self.threshold_ema_dead_code <= 0:
            return
        dead = self.cluster_size < self.threshold_ema_dead_code
        # cluster_size is identical on every rank, so all ranks agree here: no deadlock.
        if not dead.any():
            return
        fresh = _sample_vectors(_rows(_global_batch(x)), self.bins)
        _from_rank_zero_(fresh)
        # A replaced code starts at the threshold count, so it survives one EMA step and is
        # replaced again only if it still attracts nothing.
        self.embed.copy_(torch.where(dead[:, None], fresh, self.embed))
        self.cluster_size.masked_fill_(dead, self.threshold_ema_dead_code)
        self.embed_sum.copy_(
            torch.where(dead[:, None], fresh * self.threshold_ema_dead_code, self.embed_sum)
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[B, D, T] -> codes [B, T] (nearest code vector)."""
        batch, _, frames = x.shape
        flat = x.transpose(1, 2).reshape(-1, self.dim)
        return self._assign(flat, self.embed).view(batch, frames)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, T] -> [B, D, T]."""
        return F.embedding(codes, self.embed).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantize [B, D, T]; in training mode, also initialise (first call) and update the codebook.

        Returns (quantized [B, D, T], codes [B, T]). `quantized` is computed with the codebook
        as it was before this call's update, so it always matches `codes`. It carries no
        gradient: the straight-through estimator is applied by the caller. A codebook that has
        never seen a training batch is all zeros, so eval before training quantizes to zero.
        """
        x = x.detach()
        if self.training and not self.initialized:
            self._initialize(x)
        codes = self.encode(x)
        quantized = self.decode(codes)
        if self.training:
            self._ema_update(_rows(x), codes.view(-1))
            self._replace_dead_codes(x)
        return quantized, codes


class ResidualVectorQuantizer(nn.Module):
    """`n_q` EMA codebooks applied in sequence, each to the residual of the previous ones.

    Args:
        dimension: size of the latent vectors (the encoder's `dimension`).
        n_q: number of codebooks (the maximum bitrate).
        bins: code vectors per codebook; each code costs log2(bins) bits.
        decay, epsilon, threshold_ema_dead_code, kmeans_iters: see `EuclideanCodebook`.
    """

    def __init__(
        self,
        dimension: int = 128,
        n_q: int = 8,
        bins: int = 1024,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        threshold_ema_dead_code: float = 2.0,
        kmeans_iters: int = 10,
    ) -> None:
        super().__init__()
        self.dimension = dimension
        self.n_q = n_q
        self.bins = bins
        self.layers: Sequence[EuclideanCodebook] = nn.ModuleList(  # type: ignore[assignment]
            EuclideanCodebook(
                dimension, bins, decay, epsilon, threshold_ema_dead_code, kmeans_iters
            )
            for _ in range(n_q)
        )

    def bandwidth(self, frame_rate: float, n_q: int | None = None) -> float:
        """Bitrate in kbps of `n_q` codebooks (all when None) at `frame_rate` frames per second."""
        return self._check_n_q(n_q) * math.log2(self.bins) * frame_rate / 1000

    def _check_n_q(self, n_q: int | None) -> int:
        if n_q is None:
            return self.n_q
        if not 1 <= n_q <= self.n_q:
            raise ValueError(
                f"n_q={n_q} is out of range: this quantizer has 1 to {self.n_q} codebooks"
            )
        return n_q

    def forward(
        self, x: torch.Tensor, frame_rate: float, n_q: int | None = None
    ) -> QuantizedResult:
        """Quantize latents [B, D, T] with the first `n_q` codebooks (all when None).

        In training mode only those codebooks are initialised/updated, and the output is
        x + (quantized - x).detach(): the decoder's gradient reaches the encoder unchanged
        (straight-through), applied once to the sum because applying it per codebook would
        count the encoder's gradient n_q times.

        Under DDP every rank must pass the same `n_q` in a given step (the codebook statistics
        are summed per codebook): draw a random bandwidth from a generator seeded alike on
        all ranks.
        """
        n_q = self._check_n_q(n_q)
        # Nearest-neighbour search and EMA statistics in float32 even under autocast: bf16
        # distances flip assignments and the EMA sums lose precision.
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            residual = x
            quantized = torch.zeros_like(x)
            codes, losses = [], []
            for layer in self.layers[:n_q]:
                layer_quantized, layer_codes = layer(residual)
                losses.append(F.mse_loss(residual, layer_quantized))
                residual = residual - layer_quantized
                quantized = quantized + layer_quantized
                codes.append(layer_codes)
            if self.training:
                quantized = x + (quantized - x).detach()
            return QuantizedResult(
                quantized=quantized,
                codes=torch.stack(codes, dim=1),
                bandwidth=self.bandwidth(frame_rate, n_q),
                commit_loss=torch.stack(losses).mean(),
            )

    def encode(self, x: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Latents [B, D, T] -> codes [B, n_q, T]. Never updates the codebooks."""
        n_q = self._check_n_q(n_q)
        residual = x.detach().float()
        codes = []
        for layer in self.layers[:n_q]:
            layer_codes = layer.encode(residual)
            residual = residual - layer.decode(layer_codes)
            codes.append(layer_codes)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, K, T] (K <= n_q, the first K codebooks) -> latents [B, D, T]."""
        self._check_n_q(codes.shape[1])
        quantized = self.layers[0].decode(codes[:, 0])
        for k in range(1, codes.shape[1]):
            quantized = quantized + self.layers[k].decode(codes[:, k])
        return quantized
