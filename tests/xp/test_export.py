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
