"""docs/steps.md's "Adding a component" example, run as written: its Python block registers a
loss, an injector and an evaluator; its YAML block uses them in a short GAN run."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from baton.solver.extensible import ExtensibleSolver
from tests.solver.extensible_configs import TINY_STEPS, tiny_gan

DOC = (Path(__file__).resolve().parents[2] / "docs" / "steps.md").read_text()


def block(language: str, after: str) -> str:
    section = DOC[DOC.index(after):]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def test_the_documented_components_train_and_report(synth_cache: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BATON_DATA_DIR", str(synth_cache))
    monkeypatch.setenv("BATON_XP_DIR", str(tmp_path))
    exec(compile(block("python", "## Adding a component"), "docs/steps.md", "exec"), {"__name__": "mypkg.components"})
    documented = yaml.safe_load(block("yaml", "## Adding a component"))
    steps = copy.deepcopy(TINY_STEPS)
    steps["generator"]["injectors"].update(documented["steps"]["generator"]["injectors"])
    steps["generator"]["losses"].update(documented["steps"]["generator"]["losses"])
    cfg = tiny_gan("optim.updates_per_epoch=2", steps=steps, evaluators=documented["evaluators"])
    cfg.best_metric.name = "envelope"
    with ExtensibleSolver(cfg) as solver:
        history = solver.run()
    assert {"envelope", "peak"} <= set(history[0]["valid"])
    assert OmegaConf.to_container(cfg.steps)["generator"]["losses"]["envelope"]["hop"] == 128
