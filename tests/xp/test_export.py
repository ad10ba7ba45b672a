"""`baton export`: weights anyone can load with plain PyTorch."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from baton.__main__ import main
from baton.xp.folder import all_xps
from tests.xp.conftest import QUICK


def test_export_best_and_ema_weights_load_into_a_plain_module(clean_env: Path, tmp_path: Path):
    assert main(["run", *QUICK, "optim.epochs=2", "task.hidden=8"]) == 0
    (xp,) = all_xps(clean_env)
    for source in ("best", "ema", "last"):
        output = tmp_path / "export" / f"{source}.pt"
        assert main(["export", xp.sig, "-o", str(output), "--source", source]) == 0
        weights = torch.load(output, weights_only=True)  # plain tensors, no pickled baton classes
        model = nn.Module()
        model.net = nn.Sequential(nn.Linear(16, 8), nn.GELU(), nn.Dropout(0.1), nn.Linear(8, 16))
        model.load_state_dict(weights)
    best = torch.load(tmp_path / "export" / "best.pt", weights_only=True)
    last = torch.load(tmp_path / "export" / "last.pt", weights_only=True)
    assert set(best) == set(last) == {"net.0.weight", "net.0.bias", "net.3.weight", "net.3.bias"}


def test_export_before_training_is_a_clear_error(clean_env: Path, capsys):
    assert main(["grid", "example", "--init"]) == 0
    sig = all_xps(clean_env)[0].sig
    assert main(["export", sig, "-o", "unused.pt"]) == 2
    assert "no checkpoint in" in capsys.readouterr().err


def plain_model(hidden: int = 8) -> nn.Module:
    model = nn.Module()
    model.net = nn.Sequential(nn.Linear(16, hidden), nn.GELU(), nn.Dropout(0.1), nn.Linear(hidden, 16))
    return model


def test_export_to_safetensors_loads_into_a_plain_module(clean_env: Path, tmp_path: Path, capsys):
    from safetensors import safe_open
    from safetensors.torch import load_file

    assert main(["run", *QUICK, "optim.epochs=1", "task.hidden=8"]) == 0
    (xp,) = all_xps(clean_env)
    output = tmp_path / "export" / "last.safetensors"
    assert main(["export", xp.sig, "-o", str(output), "--source", "last"]) == 0
    assert f"to {output} (4 entries)" in capsys.readouterr().out
    model = plain_model()
    model.load_state_dict(load_file(output))
    as_pt = tmp_path / "last.pt"
    assert main(["export", xp.sig, "-o", str(as_pt), "--source", "last"]) == 0
    for name, value in torch.load(as_pt, weights_only=True).items():
        assert torch.equal(model.state_dict()[name], value)
    with safe_open(str(output), "pt") as handle:
        assert handle.metadata() == {"format": "pt", "baton_sig": xp.sig, "baton_source": "last"}
    assert [p.name for p in output.parent.iterdir()] == ["last.safetensors"]  # no temporary left


def test_safetensors_flattens_several_models_and_copies_shared_tensors(tmp_path: Path):
    from safetensors.torch import load_file

    from baton.xp.commands.export import write_safetensors

    shared = torch.arange(6.0).reshape(2, 3)
    weights = {"encoder": {"w": shared, "w_t": shared.t()}, "decoder": {"w": shared}}  # tied
    assert write_safetensors(weights, tmp_path / "w.safetensors") == 3
    loaded = load_file(tmp_path / "w.safetensors")
    assert set(loaded) == {"encoder.w", "encoder.w_t", "decoder.w"}
    assert torch.equal(loaded["encoder.w_t"], shared.t()) and torch.equal(loaded["decoder.w"], shared)


def test_safetensors_without_the_package_is_a_one_line_error(clean_env: Path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "safetensors", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    assert main(["export", "anything", "-o", "w.safetensors"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'baton[safetensors]'" in err
