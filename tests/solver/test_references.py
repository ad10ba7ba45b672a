"""Cross-XP references (`//sig/SIG[/best|ema|last]`) and `continue_from`, on real XPs run with
`baton.run` (the example task: seconds on a CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import baton
from baton.config import compose
from baton.errors import CheckpointError, ConfigError
from baton.solver.references import referenced_sigs, resolve
from baton.tasks.compression import CompressionSolver
from baton.tasks.example import ExampleSolver
from tests.config.conftest import clean_env  # noqa: F401  (an XP root of the test's own)
from tests.xp.conftest import QUICK

EMA = ["optim.ema.use=true", "optim.ema.decay=0.9"]


@pytest.fixture
def xp_root(clean_env: Path) -> Path:  # noqa: F811  (clean_env is the imported fixture)
    return clean_env


def test_a_sig_reference_rebuilds_that_xps_model_with_the_chosen_weights(xp_root: Path) -> None:
    source = baton.run([*QUICK, "optim.epochs=2", *EMA])
    for which in ("best", "ema", "last"):
        suffix = "" if which == "best" else f"/{which}"
        model = resolve(f"//sig/{source.sig}{suffix}", xp_root, "my_model").model(expect=ExampleSolver)
        expected = baton.load_model(source.sig, which)
        for key, value in expected.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), f"{which}: {key}"
        assert not model.training
    ema = resolve(f"//sig/{source.sig}/ema", xp_root, "k").model()
    last = resolve(f"//sig/{source.sig}/last", xp_root, "k").model()
    assert not all(torch.equal(a, b) for a, b in zip(ema.state_dict().values(), last.state_dict().values(), strict=True))


def test_bad_references_are_one_line_naming_the_key(xp_root: Path) -> None:
    source = baton.run([*QUICK, "optim.epochs=2"])
    with pytest.raises(ConfigError, match=r"codec=//sig/deadbeef: there is no XP deadbeef under .*; run that XP first"):
        resolve("//sig/deadbeef", xp_root, "codec")
    with pytest.raises(ConfigError, match=r"codec=//sig/x/y/z: write //sig/SIG, or //sig/SIG/best, /ema or /last"):
        resolve("//sig/x/y/z", xp_root, "codec")
    with pytest.raises(ConfigError, match=rf"codec=//sig/{source.sig} is XP {source.sig}, trained by solver 'example'; "
                                          r"this needs an XP of CompressionSolver"):
        resolve(f"//sig/{source.sig}", xp_root, "codec").model(expect=CompressionSolver)
    unfinished = baton.run([*QUICK, "optim.epochs=2", "label=unfinished"])
    history = unfinished.folder / "history.jsonl"
    history.write_text(history.read_text().splitlines()[0] + "\n")  # as if stopped after epoch 1
    with pytest.raises(ConfigError, match=rf"codec=//sig/{unfinished.sig}: XP {unfinished.sig} has trained 1 of its 2 "
                                          rf"epochs; finish it first \(baton run -f {unfinished.sig}\)"):
        resolve(f"//sig/{unfinished.sig}", xp_root, "codec")


def test_the_referenced_sig_is_part_of_the_signature(xp_root: Path) -> None:
    a = compose([*QUICK, "continue_from=//sig/aaaaaaaa"])
    b = compose([*QUICK, "continue_from=//sig/bbbbbbbb"])
    plain = compose(QUICK)
    assert len({a.xp.sig, b.xp.sig, plain.xp.sig}) == 3
    assert a.xp.delta["continue_from"] == "//sig/aaaaaaaa"


def test_continue_from_starts_from_the_weights_with_a_fresh_optimizer(xp_root: Path) -> None:
    source = baton.run([*QUICK, "optim.epochs=2", "optim.lr=0.05"])
    seen: dict[str, object] = {}

    class Spy(ExampleSolver):
        def restore(self) -> bool:
            resumed = super().restore()
            seen["weights"] = {k: v.clone() for k, v in self.model.state_dict().items()}
            seen["optimizer"] = self.stepper.optimizer.state_dict()["state"]
            seen["epoch"], seen["resumed"] = self.epoch, resumed
            return resumed

    cfg = compose([*QUICK, "optim.epochs=1", f"continue_from=//sig/{source.sig}"])
    with Spy(cfg) as solver:
        solver.run()
    best = baton.load_model(source.sig, "best")
    assert all(torch.equal(seen["weights"][k], v) for k, v in best.state_dict().items())
    assert seen["optimizer"] == {} and seen["epoch"] == 1 and seen["resumed"] is False
    # Run again: it resumes its own checkpoint (done), not the reference.
    with Spy(cfg) as again:
        again.run()
    assert seen["resumed"] is True and seen["epoch"] == 2


def test_continue_from_another_solver_is_refused(xp_root: Path, synth_cache: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_DATA_DIR", str(synth_cache))
    source = baton.run([*QUICK, "optim.epochs=1"])
    cfg = compose(["solver=compression/debug", "optim.epochs=1", f"continue_from=//sig/{source.sig}",
                   "logging.tensorboard=false"])
    with pytest.raises(CheckpointError, match=rf"continue_from=//sig/{source.sig} is XP {source.sig} of solver "
                                              r"'example'; this XP's solver is 'compression'"):
        with CompressionSolver(cfg) as solver:
            solver.run()


def test_referenced_sigs_are_what_a_grid_orders_its_xps_by() -> None:
    values = ["//sig/0eab64bd", "//sig/f54497b0/ema", ["//sig/6d08eaa0/last", "plain"], "/data/xps/1234", 3, None]
    assert referenced_sigs(values) == {"0eab64bd", "f54497b0", "6d08eaa0"}
