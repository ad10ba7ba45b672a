"""Fréchet distance between two sets of embeddings (FAD when the embeddings are an audio
classifier's): the distance between Gaussians fitted to each set,

    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)

computed in float64 with symmetric square roots (eigendecompositions), so it is exact for
rank-deficient covariances (fewer items than dimensions) and never complex.
"""

from __future__ import annotations

import torch


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Between embeddings a [n, d] and b [m, d] (n, m >= 2)."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected [n, d] and [m, d] embeddings, got {list(a.shape)} and {list(b.shape)}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("a Fréchet distance needs at least two items per set")
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    root_a = _sqrtm(cov_a)
    middle = _sqrtm(root_a @ cov_b @ root_a)
    value = (mu_a - mu_b).pow(2).sum() + torch.trace(cov_a + cov_b - 2 * middle)
    return float(value.clamp_min(0.0))


def _sqrtm(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp_min(0.0).sqrt()) @ vectors.T
