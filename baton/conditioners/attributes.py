"""What an item is conditioned on, and the dropouts that teach a model to do without it.

`ConditioningAttributes` holds one item's attributes in three kinds, each a dict by name:

    text         free text ("a bright note")                  -> a text conditioner
    categorical  one label out of a known set ("note_bright") -> a lookup table
    wav          a reference clip (`WavCondition`)            -> a waveform conditioner

A value of None means "absent": its conditioner gives a masked-out (all-zero) embedding, so
one batch may mix items with and without an attribute. Dropping attributes at random in
training (`AttributeDropout`, per attribute) and dropping all of an item's attributes
(`ClassifierFreeGuidanceDropout`) teach the model the unconditional case that classifier-free
guidance needs at sampling time (`nullified`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

KINDS = ("text", "categorical", "wav")


@dataclass
class WavCondition:
    """A reference clip: [channels, time] at `sample_rate`, `length` valid frames."""

    wav: torch.Tensor
    length: int
    sample_rate: int


@dataclass
class ConditioningAttributes:
    text: dict[str, str | None] = field(default_factory=dict)
    categorical: dict[str, str | None] = field(default_factory=dict)
    wav: dict[str, WavCondition | None] = field(default_factory=dict)

    def kind(self, name: str) -> dict:
        """The dict that holds attribute `name` (text, categorical or wav)."""
        for kind in KINDS:
            values = getattr(self, kind)
            if name in values:
                return values
        raise KeyError(f"no attribute '{name}' (this item has {', '.join(self.names()) or 'none'})")

    def names(self) -> list[str]:
        return [name for kind in KINDS for name in getattr(self, kind)]

    def drop(self, name: str) -> None:
        self.kind(name)[name] = None


def nullified(attributes: Sequence[ConditioningAttributes]) -> list[ConditioningAttributes]:
    """Copies with every attribute absent: the unconditional branch of classifier-free guidance."""
    out = []
    for item in attributes:
        empty = copy.copy(item)
        empty.text = dict.fromkeys(item.text)
        empty.categorical = dict.fromkeys(item.categorical)
        empty.wav = dict.fromkeys(item.wav)
        out.append(empty)
    return out


class AttributeDropout:
    """Drop each attribute of each item with its own probability, e.g. {"label": 0.1}.

    Draws from torch's global generator (held by checkpoints: a resumed run draws the same)."""

    def __init__(self, probabilities: Mapping[str, float]) -> None:
        for name, p in probabilities.items():
            if not 0 <= float(p) <= 1:
                raise ValueError(f"dropout of attribute '{name}' is {p}; it must lie in [0, 1]")
        self.probabilities = {str(k): float(v) for k, v in probabilities.items()}

    def __call__(self, attributes: Sequence[ConditioningAttributes]) -> list[ConditioningAttributes]:
        out = [copy.deepcopy(item) for item in attributes]
        for name, p in self.probabilities.items():
            if p == 0:
                continue
            draws = torch.rand(len(out)).tolist()
            for item, draw in zip(out, draws, strict=True):
                if draw < p and name in item.names():
                    item.drop(name)
        return out


class ClassifierFreeGuidanceDropout:
    """Drop all of an item's attributes with probability `p` (the unconditional examples)."""

    def __init__(self, p: float) -> None:
        if not 0 <= float(p) <= 1:
            raise ValueError(f"classifier-free guidance dropout is {p}; it must lie in [0, 1]")
        self.p = float(p)

    def __call__(self, attributes: Sequence[ConditioningAttributes]) -> list[ConditioningAttributes]:
        if self.p == 0:
            return list(attributes)
        draws = torch.rand(len(attributes)).tolist()
        empty = nullified(attributes)
        return [e if d < self.p else a for a, e, d in zip(attributes, empty, draws, strict=True)]
