"""From the `conditioner` config section to the modules a conditioned model holds.

    conditioner:
      conditioners:                  # attribute name -> its conditioner
        label: {type: lut, classes: [note_bright, chirp_up, ...]}
      fuser: {sum: [label], prepend: [], cross: []}
      attribute_dropout: {label: 0.1}  # per attribute, in training
      cfg_dropout: 0.2                 # all attributes of an item, in training

Every conditioner gets the model's `dim`. Checked when built, one line each: an unknown type
(with the known ones), an option a conditioner does not take, a fuser entry with no
conditioner, a conditioner the fuser does not place, a probability outside [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..errors import ConfigError
from .attributes import AttributeDropout, ClassifierFreeGuidanceDropout, ConditioningAttributes
from .conditioners import Conditioner, Embedded
from .fuser import ConditionFuser
from .registry import conditioners as registry


class ConditioningProvider(nn.Module):
    """Each attribute's conditioner; `forward` embeds a batch of attributes."""

    def __init__(self, conditioners: Mapping[str, Conditioner]) -> None:
        super().__init__()
        self.conditioners = nn.ModuleDict(conditioners)

    def forward(self, attributes: Sequence[ConditioningAttributes]) -> dict[str, Embedded]:
        out = {}
        for name, module in self.conditioners.items():
            conditioner: Conditioner = module  # type: ignore[assignment]
            values = []
            for item in attributes:
                kind = getattr(item, conditioner.kind)
                if name not in kind:
                    raise ConfigError(
                        f"conditioner '{name}' reads {conditioner.kind} attribute '{name}', which the items "
                        f"do not have (they have {', '.join(item.names()) or 'none'})"
                    )
                values.append(kind[name])
            out[name] = conditioner(values)
        return out


@dataclass
class Conditioning:
    provider: ConditioningProvider
    fuser: ConditionFuser
    attribute_dropout: AttributeDropout
    cfg_dropout: ClassifierFreeGuidanceDropout

    def training_attributes(self, attributes: Sequence[ConditioningAttributes]) -> list[ConditioningAttributes]:
        """Both dropouts, as applied in training."""
        return self.cfg_dropout(self.attribute_dropout(attributes))


def build_conditioning(section: Mapping[str, Any] | None, dim: int) -> Conditioning:
    """The conditioning modules of a `conditioner` config section (None: no conditioning)."""
    section = dict(section or {})
    unknown = set(section) - {"conditioners", "fuser", "attribute_dropout", "cfg_dropout"}
    if unknown:
        raise ConfigError(
            f"conditioner.{sorted(unknown)[0]} is unknown; the section takes conditioners, fuser, "
            "attribute_dropout, cfg_dropout"
        )
    built = {}
    for name, spec in (section.get("conditioners") or {}).items():
        options = dict(spec or {})
        kind = options.pop("type", None)
        where = f"conditioner.conditioners.{name}"
        if kind is None:
            raise ConfigError(f"{where}: needs a 'type'; known: {', '.join(registry.names())}")
        built[str(name)] = registry.build(str(kind), {"dim": dim, **options}, where)
    fuser = ConditionFuser(section.get("fuser") or {})
    for name in fuser.places["prepend"]:
        if name in built and built[name].kind == "text":
            # A text's steps vary with the batch's longest text: prepended, they would move the
            # model's positions with its batch mates. Cross-attention masks them instead.
            raise ConfigError(f"conditioner.fuser.prepend: '{name}' is text, whose length varies; place it in cross")
    for name in fuser.names:
        if name not in built:
            raise ConfigError(f"conditioner.fuser places '{name}', which has no conditioner in conditioner.conditioners")
    for name in built:
        if name not in fuser.names:
            raise ConfigError(f"conditioner.conditioners.{name} is placed nowhere; add it to conditioner.fuser (prepend, cross or sum)")
    drops = dict(section.get("attribute_dropout") or {})
    for name in drops:
        if name not in built:
            raise ConfigError(f"conditioner.attribute_dropout.{name}: no conditioner '{name}'")
    try:
        return Conditioning(ConditioningProvider(built), fuser, AttributeDropout(drops),
                            ClassifierFreeGuidanceDropout(float(section.get("cfg_dropout") or 0.0)))
    except ValueError as exc:
        raise ConfigError(f"conditioner: {exc}") from None
