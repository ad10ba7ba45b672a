"""A pre-norm causal transformer decoder with a key/value cache, for sampling step by step.

Training runs the whole sequence at once under a causal mask. Sampling feeds one new step at
a time: each layer keeps the keys and values of the steps it has seen (`KVCache`), so a step
costs one position's work instead of the whole prefix's. Both paths share the same weights and
the same arithmetic per position (tests/models/test_transformer.py compares them).

Each layer: self-attention (causal), cross-attention to a memory (conditions; a learned null
slot keeps every row attendable), feed-forward; each sublayer as x + dropout(f(norm(x))).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KVCache:
    """Per layer, the self-attention keys and values [B, heads, steps, head_dim] seen so far."""

    def __init__(self, layers: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * layers
        self.values: list[torch.Tensor | None] = [None] * layers

    @property
    def length(self) -> int:
        """Steps already cached (the position of the next one)."""
        first = self.keys[0]
        return 0 if first is None else first.shape[2]

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        past_k, past_v = self.keys[layer], self.values[layer]
        if past_k is not None and past_v is not None:
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not a multiple of heads={heads}")
        self.heads, self.dropout = heads, dropout
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, dim = x.shape
        return x.view(batch, steps, self.heads, dim // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, source: torch.Tensor, *, causal: bool = False,
                mask: torch.Tensor | None = None, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        """`mask` [B, 1, 1, S]: True where a key may be attended. With `cache`, the keys and
        values of `source` are appended to the cached ones and `x` attends to all of them."""
        q = self.split(self.query(x))
        k, v = (self.split(t) for t in self.key_value(source).chunk(2, dim=-1))
        if cache is not None:
            if causal and cache.keys[layer] is not None and x.shape[1] > 1:
                raise ValueError("after the first call, a cached decoder takes one step at a time")
            k, v = cache.extend(layer, k, v)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout,
                                           is_causal=causal and x.shape[1] > 1)
        batch, _, steps, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(batch, steps, -1))


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.self_norm, self.cross_norm, self.ff_norm = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attention = Attention(dim, heads, dropout)
        self.cross_attention = Attention(dim, heads, dropout)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor,
                cache: KVCache | None, layer: int) -> torch.Tensor:
        h = self.self_norm(x)
        x = x + self.drop(self.self_attention(h, h, causal=True, cache=cache, layer=layer))
        x = x + self.drop(self.cross_attention(self.cross_norm(x), memory, mask=memory_mask))
        return x + self.drop(self.ff(self.ff_norm(x)))


class CausalDecoder(nn.Module):
    """`layers` DecoderLayers, then a final norm."""

    def __init__(self, dim: int, heads: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def new_cache(self) -> KVCache:
        return KVCache(len(self.layers))

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor,
                cache: KVCache | None = None) -> torch.Tensor:
        """x [B, T, dim]; memory [B, M, dim]; memory_mask [B, M], True where attendable.
        With `cache`: x holds the steps after those cached (all at the first call, one after)."""
        mask = memory_mask[:, None, None, :]
        for index, layer in enumerate(self.layers):
            x = layer(x, memory, mask, cache, index)
        return self.norm(x)
