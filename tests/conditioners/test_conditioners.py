"""Conditioners, the fuser and the dropouts, on small batches: what each gives for present
and absent attributes, and how the config section is checked."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from baton.conditioners import (
    AttributeDropout,
    ClassifierFreeGuidanceDropout,
    ConditioningAttributes,
    WavCondition,
    build_conditioning,
    nullified,
)
from baton.errors import ConfigError

CLASSES = ["note_bright", "chirp_up", "noise_white"]


def items(*labels: str | None, text: str | None = "a bright note") -> list[ConditioningAttributes]:
    clip = WavCondition(torch.sin(torch.arange(4000.0) * 0.1)[None], 4000, 16000)
    return [ConditioningAttributes(text={"description": text}, categorical={"label": label}, wav={"melody": clip})
            for label in labels]


SECTION = {
    "conditioners": {
        "label": {"type": "lut", "classes": CLASSES},
        "description": {"type": "text_char", "max_length": 16},
        "melody": {"type": "wav_mel", "sample_rate": 16000, "n_mels": 8},
    },
    "fuser": {"sum": ["label"], "cross": ["description"], "prepend": ["melody"]},
    "attribute_dropout": {"label": 0.0},
    "cfg_dropout": 0.0,
}


def test_each_conditioner_embeds_present_values_and_masks_absent_ones() -> None:
    conditioning = build_conditioning(SECTION, dim=8)
    batch = items("chirp_up", None)
    batch[1].text["description"] = None
    batch[1].wav["melody"] = None
    out = conditioning.provider(batch)
    label, label_mask = out["label"]
    assert label.shape == (2, 1, 8) and label_mask.tolist() == [[True], [False]]
    assert torch.equal(label[1], torch.zeros(1, 8)) and label[0].abs().sum() > 0
    text, text_mask = out["description"]
    assert text.shape == (2, len("a bright note"), 8) and text_mask[0].all() and not text_mask[1].any()
    assert torch.isfinite(text).all() and torch.equal(text[1], torch.zeros_like(text[1]))
    melody, melody_mask = out["melody"]
    assert melody.shape == (2, 1, 8) and melody_mask.tolist() == [[True], [False]]


def test_the_fuser_places_each_condition() -> None:
    conditioning = build_conditioning(SECTION, dim=8)
    x = torch.zeros(2, 5, 8)
    fused = conditioning.fuser(x, conditioning.provider(items("chirp_up", "note_bright")))
    assert fused.prefix == 1 and fused.x.shape == (2, 6, 8)  # the melody summary, prepended
    assert fused.cross is not None and fused.cross.shape == (2, 13, 8) and fused.cross_mask.all()
    assert not torch.equal(fused.x[0, 1:], fused.x[1, 1:])  # the label, summed into every step
    assert torch.equal(fused.x[0, 1], fused.x[0, 4])


def test_nullified_attributes_give_the_unconditional_input() -> None:
    conditioning = build_conditioning(SECTION, dim=8)
    x = torch.randn(2, 5, 8)
    fused = conditioning.fuser(x, conditioning.provider(nullified(items("chirp_up", "note_bright"))))
    assert torch.equal(fused.x[:, 1:], x) and torch.equal(fused.x[:, 0], torch.zeros(2, 8))
    assert not fused.cross_mask.any()


def test_dropouts_drop_at_their_rates() -> None:
    torch.manual_seed(0)
    batch = items(*(["chirp_up"] * 2000))
    kept = AttributeDropout({"label": 0.25})(batch)
    dropped = sum(item.categorical["label"] is None for item in kept) / len(kept)
    assert dropped == pytest.approx(0.25, abs=0.03)
    assert all(item.text["description"] == "a bright note" for item in kept), "other attributes stay"
    assert all(item.categorical["label"] == "chirp_up" for item in batch), "the input is not changed"
    unconditional = ClassifierFreeGuidanceDropout(0.5)(batch)
    empty = [all(v is None for v in (i.categorical["label"], i.text["description"], i.wav["melody"])) for i in unconditional]
    assert sum(empty) / len(empty) == pytest.approx(0.5, abs=0.04)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"conditioners": {"label": {"type": "lookup", "classes": CLASSES}}},
         r"conditioner.conditioners.label: unknown conditioner type 'lookup'; known: lut, text_char, wav_mel"),
        ({"conditioners": {"label": {"type": "lut", "clases": CLASSES}}},
         r"conditioner.conditioners.label \(conditioner type 'lut'\): unknown option 'clases' \(did you mean 'classes'\?\)"),
        ({"fuser": {"sum": ["label", "tempo"], "cross": ["description"], "prepend": ["melody"]}},
         r"conditioner.fuser places 'tempo', which has no conditioner"),
        ({"fuser": {"sum": ["label"], "cross": ["description"]}}, r"conditioner.conditioners.melody is placed nowhere"),
        ({"fuser": {"sum": ["label"], "cross": ["label", "description"], "prepend": ["melody"]}},
         r"conditioner.fuser: 'label' is in both cross and sum; pick one"),
        ({"cfg_dropout": 1.5}, r"classifier-free guidance dropout is 1.5; it must lie in \[0, 1\]"),
        ({"conditioners": {"label": {"type": "lut", "classes": []}}}, r"classes must be distinct and not empty"),
        ({"dropout": 0.1}, r"conditioner.dropout is unknown"),
        ({"fuser": {"sum": ["label"], "prepend": ["description", "melody"]}},
         r"conditioner.fuser.prepend: 'description' is text, whose length varies; place it in cross"),
    ],
)
def test_section_mistakes_are_one_line(change: dict, message: str) -> None:
    section = {**SECTION, **change}
    if "conditioners" in change and "fuser" not in change:
        section["fuser"] = {"sum": list(change["conditioners"])}
    with pytest.raises(ConfigError, match=message):
        build_conditioning(section, dim=8)


def test_an_unknown_class_names_the_known_ones() -> None:
    conditioning = build_conditioning(SECTION, dim=8)
    with pytest.raises(ValueError, match="unknown class 'bird'; this lookup table knows note_bright, chirp_up"):
        conditioning.provider(items("bird"))


@pytest.mark.parametrize("option", ["none", "label", "text", "label_text"])
def test_every_option_of_the_conditioner_group_builds(option: str) -> None:
    from omegaconf import OmegaConf

    import baton

    section = OmegaConf.to_container(OmegaConf.load(Path(baton.__file__).parent / "conf" / "conditioner" / f"{option}.yaml"))
    conditioning = build_conditioning(section, dim=16)
    x = torch.zeros(2, 3, 16)
    labels = ["chirp_up", "pulses"]
    batch = [ConditioningAttributes(text={"description": label.replace("_", " ")}, categorical={"label": label})
             for label in labels]
    fused = conditioning.fuser(x, conditioning.provider(batch))
    assert fused.x.shape[1] == 3 + fused.prefix
    assert (fused.cross is not None) == (option in ("text", "label_text"))
