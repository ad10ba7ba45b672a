"""How conditions reach a model: `ConditionFuser` puts each conditioner's output where the
config says.

    prepend  its steps go before the model's input sequence (the model skips them in its output);
             for conditions of a fixed number of steps (lut, wav_mel), not text
    cross    its steps are keys/values of the model's cross-attention
    sum      its masked mean over steps is added to every input step

An absent attribute (masked out) contributes zeros in every place, so the unconditional
branch of classifier-free guidance needs no special path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from .conditioners import Embedded

PLACES = ("prepend", "cross", "sum")


@dataclass
class Fused:
    x: torch.Tensor  # [batch, prefix + time, dim]
    prefix: int  # steps prepended before the input
    cross: torch.Tensor | None  # [batch, steps, dim] for cross-attention
    cross_mask: torch.Tensor | None  # [batch, steps], True where a condition is present


class ConditionFuser(nn.Module):
    def __init__(self, places: Mapping[str, Sequence[str]]) -> None:
        super().__init__()
        self.places: dict[str, list[str]] = {place: [] for place in PLACES}
        for place, names in places.items():
            if place not in PLACES:
                raise ConfigError(f"conditioner.fuser.{place}: unknown place; use {', '.join(PLACES)}")
            self.places[place] = [str(n) for n in names or []]
        seen: dict[str, str] = {}
        for place, names in self.places.items():
            for name in names:
                if name in seen:
                    raise ConfigError(f"conditioner.fuser: '{name}' is in both {seen[name]} and {place}; pick one")
                seen[name] = place
        self.names = list(seen)

    def forward(self, x: torch.Tensor, conditions: Mapping[str, Embedded]) -> Fused:
        missing = [n for n in self.names if n not in conditions]
        if missing:
            raise ConfigError(f"conditioner.fuser places {missing}, which no conditioner gives")
        for name in self.places["sum"]:
            embedding, mask = conditions[name]
            weights = mask[..., None].to(embedding.dtype)
            x = x + (embedding * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp_min(1)
        prefix = [conditions[n][0] for n in self.places["prepend"]]
        if prefix:
            x = torch.cat([*prefix, x], dim=1)
        cross = cross_mask = None
        if self.places["cross"]:
            cross = torch.cat([conditions[n][0] for n in self.places["cross"]], dim=1)
            cross_mask = torch.cat([conditions[n][1] for n in self.places["cross"]], dim=1)
        return Fused(x, sum(p.shape[1] for p in prefix), cross, cross_mask)
