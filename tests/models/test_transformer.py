"""The LM's decoder and its key/value cache: sampling one step at a time through the cache
gives what running the whole sequence at every step gives, for every way conditions enter."""

from __future__ import annotations

import pytest
import torch

from baton.conditioners import ConditioningAttributes, nullified
from baton.models.lm import CodesLM
from baton.models.transformer import CausalDecoder

CLASSES = ["chirp_up", "pulses", "noise_white"]
FUSERS = {
    "sum": {"sum": ["label"]},
    "prepend": {"prepend": ["label"]},
    "cross": {"sum": ["label"], "cross": ["description"]},
}


def small_lm(fuser: dict) -> CodesLM:
    torch.manual_seed(0)
    conditioners = {"label": {"type": "lut", "classes": CLASSES}, "description": {"type": "text_char", "max_length": 16}}
    placed = {name for names in fuser.values() for name in names}
    conditioner = {
        "conditioners": {name: spec for name, spec in conditioners.items() if name in placed},
        "fuser": fuser, "attribute_dropout": {}, "cfg_dropout": 0.0,
    }
    return CodesLM(32, 3, dim=32, heads=4, layers=2, max_steps=64, dropout=0.0, conditioner=conditioner).eval()


def attributes() -> list[ConditioningAttributes]:
    return [ConditioningAttributes(text={"description": name.replace("_", " ")}, categorical={"label": name})
            for name in CLASSES[:2]]


@pytest.mark.parametrize("fuser", FUSERS, ids=list(FUSERS))
def test_cached_steps_give_the_logits_of_the_whole_sequence(fuser: str) -> None:
    model = small_lm(FUSERS[fuser])
    inputs = torch.randint(0, 33, (2, 9, 3))
    conditions = model.conditioners(attributes())
    whole = model.logits(inputs, conditions)
    cache = model.transformer.new_cache()
    stepped = torch.cat([model.logits(inputs[:, i:i + 1], conditions, cache) for i in range(9)], dim=1)
    torch.testing.assert_close(stepped, whole, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fuser", FUSERS, ids=list(FUSERS))
def test_generation_with_and_without_the_cache_is_the_same(fuser: str) -> None:
    model = small_lm(FUSERS[fuser])
    for scale in (1.0, 3.0):
        kwargs = {"top_k": 8, "cfg_scale": scale}
        cached = model.generate(attributes(), 6, generator=torch.Generator().manual_seed(1), **kwargs)
        full = model.generate(attributes(), 6, generator=torch.Generator().manual_seed(1), use_cache=False, **kwargs)
        assert torch.equal(cached, full)
    greedy = [model.generate(nullified(attributes()), 6, temperature=0, use_cache=flag) for flag in (True, False)]
    assert torch.equal(*greedy)


def test_the_decoder_is_causal_and_reads_its_memory_where_attendable() -> None:
    torch.manual_seed(0)
    decoder = CausalDecoder(16, 2, 2, 0.0).eval()
    x, memory = torch.randn(1, 6, 16), torch.randn(1, 3, 16)
    attendable = torch.tensor([[True, True, False]])
    out = decoder(x, memory, attendable)
    changed = x.clone()
    changed[:, 4:] += 1.0
    assert torch.allclose(decoder(changed, memory, attendable)[:, :4], out[:, :4], atol=1e-6)
    masked_out = memory.clone()
    masked_out[:, 2] += 5.0  # the slot no one may attend
    assert torch.allclose(decoder(x, masked_out, attendable), out, atol=1e-6)
    assert not torch.allclose(decoder(x, memory + 1.0, attendable), out, atol=1e-3)


def test_a_cached_decoder_refuses_several_steps_after_the_first_call() -> None:
    decoder = CausalDecoder(16, 2, 1, 0.0).eval()
    memory, attendable = torch.randn(1, 1, 16), torch.ones(1, 1, dtype=torch.bool)
    cache = decoder.new_cache()
    decoder(torch.randn(1, 3, 16), memory, attendable, cache)
    assert cache.length == 3
    with pytest.raises(ValueError, match="one step at a time"):
        decoder(torch.randn(1, 2, 16), memory, attendable, cache)
