"""A small transformer language model over a codec's K codebooks (MusicGen-like).

Each step's input is the sum of K code embeddings (what the previous step predicted, see
`patterns.py`) plus a learned position; conditions enter through the fuser (summed, prepended,
or as cross-attention memory); K heads predict the K codes of the step. `generate` samples
step by step with temperature, top-k / top-p, and classifier-free guidance:
logits = uncond + scale * (cond - uncond), both branches in one batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..conditioners import ConditioningAttributes, build_conditioning, nullified
from ..conditioners.conditioners import Embedded
from .patterns import Pattern
from .transformer import CausalDecoder, KVCache


class CodesLM(nn.Module):
    """Args:
        card: codes per codebook (the codec's bins).
        num_codebooks: K, the codebooks modelled (the codec's first K).
        pattern: 'delay' or 'flat'.
        conditioner: the `conditioner` config section (None: unconditional).
    """

    def __init__(
        self, card: int, num_codebooks: int, *, dim: int = 256, heads: int = 4, layers: int = 6,
        max_steps: int = 1024, dropout: float = 0.1, pattern: str = "delay",
        conditioner: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.card, self.num_codebooks, self.max_steps = card, num_codebooks, max_steps
        self.pattern = Pattern(pattern, num_codebooks, special=card)
        self.embed = nn.ModuleList(nn.Embedding(card + 1, dim) for _ in range(num_codebooks))
        self.position = nn.Embedding(max_steps, dim)
        self.null_memory = nn.Parameter(torch.zeros(1, 1, dim))  # always attendable: no all-masked rows
        conditioning = build_conditioning(conditioner, dim)
        self.conditioners, self.fuser = conditioning.provider, conditioning.fuser
        self.attribute_dropout, self.cfg_dropout = conditioning.attribute_dropout, conditioning.cfg_dropout
        self.transformer = CausalDecoder(dim, heads, layers, dropout)
        self.heads = nn.ModuleList(nn.Linear(dim, card) for _ in range(num_codebooks))

    def forward(self, inputs: torch.Tensor, attributes: Sequence[ConditioningAttributes]) -> torch.Tensor:
        """inputs [B, S, K] code ids (`card` = empty) -> logits [B, S, K, card]."""
        return self.logits(inputs, self.conditioners(attributes))

    def logits(self, inputs: torch.Tensor, conditions: Mapping[str, Embedded], cache: KVCache | None = None) -> torch.Tensor:
        """Logits of `inputs` given embedded conditions. With `cache`, `inputs` are the steps
        after those cached: the conditions are prepended at the first call only (position 0),
        and later steps take the positions after the cached ones."""
        steps = inputs.shape[1]
        x = sum(embed(inputs[..., k]) for k, embed in enumerate(self.embed))
        fused = self.fuser(x, conditions)
        start = 0 if cache is None else cache.length
        h, prefix = fused.x, fused.prefix
        if start:  # the prefix is cached already
            h, prefix = h[:, prefix:], 0
        end = start + h.shape[1]
        if end > self.max_steps:
            raise ValueError(f"{end} steps (with conditions) exceed max_steps={self.max_steps}; raise it")
        h = h + self.position(torch.arange(start, end, device=inputs.device))[None]
        batch = inputs.shape[0]
        memory = self.null_memory.expand(batch, 1, -1)
        attendable = torch.ones(batch, 1, dtype=torch.bool, device=inputs.device)
        if fused.cross is not None and fused.cross_mask is not None:
            memory = torch.cat([memory, fused.cross], dim=1)
            attendable = torch.cat([attendable, fused.cross_mask], dim=1)
        h = self.transformer(h, memory, attendable, cache)[:, prefix:]
        assert h.shape[1] == steps
        return torch.stack([head(h) for head in self.heads], dim=2)

    def loss(self, codes: torch.Tensor, attributes: Sequence[ConditioningAttributes]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """See `lm_loss` (which trains through a DDP wrapper too)."""
        return lm_loss(self, codes, attributes)

    @torch.no_grad()
    def generate(
        self, attributes: Sequence[ConditioningAttributes], frames: int, *, temperature: float = 1.0,
        top_k: int = 0, top_p: float = 0.0, cfg_scale: float = 1.0, generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Codes [B, K, frames] sampled for `attributes` (one item each). Each step feeds only
        the newest codes through the key/value cache; `use_cache=False` runs the whole sequence
        at every step instead (the same result, slower: a reference for tests)."""
        device = self.position.weight.device
        batch, steps = len(attributes), self.pattern.num_steps(frames)
        _, valid = self.pattern.positions(frames)
        guided = cfg_scale != 1.0
        conditions = self.conditioners(list(attributes) + (nullified(attributes) if guided else []))
        sequence = torch.full((batch, steps, self.num_codebooks), self.card, dtype=torch.long, device=device)
        start = torch.full((batch, 1, self.num_codebooks), self.card, dtype=torch.long, device=device)
        cache = self.transformer.new_cache() if use_cache else None
        for step in range(steps):
            if cache is None:
                inputs = torch.cat([start, sequence[:, :step]], dim=1)
            else:
                inputs = start if step == 0 else sequence[:, step - 1:step]
            if guided:
                inputs = torch.cat([inputs, inputs])
            logits = self.logits(inputs, conditions, cache)[:, -1].float()  # [B(*2), K, card]
            if guided:
                cond, uncond = logits.chunk(2)
                logits = uncond + cfg_scale * (cond - uncond)
            codes = sample(logits, temperature, top_k, top_p, generator)
            sequence[:, step] = torch.where(valid[step].to(device), codes, self.card)
        return self.pattern.revert(sequence, frames)


def lm_loss(model: nn.Module, codes: torch.Tensor, attributes: Sequence[ConditioningAttributes]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Cross-entropy of codes [B, K, T] under `model` (a CodesLM, or the DDP wrapper around one:
    the forward goes through `model(...)`, so DDP synchronises its gradients), averaged over the
    valid slots of the pattern; and per codebook."""
    pattern: Pattern = model.pattern  # type: ignore[assignment]
    inputs, targets, valid = pattern.build(codes)
    logits = model(inputs, attributes)
    per_book = []
    for k in range(codes.shape[1]):
        mask = valid[:, k]
        per_book.append(nn.functional.cross_entropy(logits[:, mask, k].flatten(0, 1).float(), targets[:, mask, k].flatten()))
    return torch.stack(per_book).mean(), per_book


def sample(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
           generator: torch.Generator | None) -> torch.Tensor:
    """One code per row of logits [..., card]: greedy at temperature 0, else top-k / top-p."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    if top_p > 0:
        sorted_probs, order = probs.sort(-1, descending=True)
        keep = sorted_probs.cumsum(-1) - sorted_probs < top_p  # the smallest set reaching top_p
        sorted_probs = sorted_probs * keep
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs = probs / probs.sum(-1, keepdim=True)
    flat = probs.reshape(-1, probs.shape[-1])
    drawn = torch.multinomial(flat.cpu(), 1, generator=generator).to(logits.device)
    return drawn.view(probs.shape[:-1])
