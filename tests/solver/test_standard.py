"""StandardSolver behaviour through the example task: stages, best state, EMA, resume, AMP."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from baton.errors import ConfigError
from baton.tasks.example import ExampleSolver
from tests.helpers import example_config

FAST = ["logging.tensorboard=false", "task.num_train=256", "task.num_valid=64"]


def solver(folder: Path, *overrides: str) -> ExampleSolver:
    return ExampleSolver(example_config(folder, *FAST, *overrides))


def test_trains_and_writes_the_xp_folder(tmp_path: Path) -> None:
    history = solver(tmp_path, "optim.epochs=3").run()
    assert len(history) == 3
    assert history[-1]["train"]["loss"] < history[0]["train"]["loss"]
    assert history[-1]["valid"]["loss"] < history[0]["valid"]["loss"]
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == history
    for name in ("checkpoint.th", "checkpoint_2.th", "checkpoint_3.th", "solver.log"):
        assert (tmp_path / name).exists(), name
    assert not (tmp_path / "checkpoint_1.th").exists()  # keep_last=2
    assert json.loads((tmp_path / "samples" / "3" / "predictions.json").read_text())


def test_evaluate_and_generate_every_n_epochs_and_at_the_last(tmp_path: Path) -> None:
    history = solver(tmp_path, "optim.epochs=5", "evaluate.every=2", "generate.every=3").run()
    assert [("evaluate" in h) for h in history] == [False, True, False, True, True]
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["3", "5"]


def test_updates_per_epoch_continue_through_the_data(tmp_path: Path) -> None:
    s = solver(tmp_path, "optim.epochs=2", "optim.updates_per_epoch=5", "dataset.batch_size=64")
    s.run()
    assert s.update_count == 10
    # 256 items / 64 = 4 batches per data epoch: 10 batches = 2 full data epochs + 2 batches.
    assert s.train_stream.state_dict() == {"epoch": 2, "position": 2, "world_size": 1}


@pytest.mark.parametrize("remainder, updates", [("drop", 2), ("step", 3)])
def test_short_last_accumulation_group(tmp_path: Path, remainder: str, updates: int) -> None:
    # 256 items / 32 = 8 batches per pass; 3 micro-batches per update leaves 2 over.
    s = solver(tmp_path, "optim.epochs=1", "optim.grad_accumulation=3",
               f"optim.accumulation_remainder={remainder}")
    s.run()
    assert s.update_count == updates


def test_best_state_and_ema_are_restored_by_value(tmp_path: Path) -> None:
    first = solver(tmp_path, "optim.epochs=3", "best_metric.direction=max")
    first.run()
    # direction=max on a falling loss: the best is the first epoch's valid loss.
    assert first.best_value == first.history[0]["valid"]["loss"]
    resumed = solver(tmp_path, "optim.epochs=3", "best_metric.direction=max")
    assert resumed.restore()
    assert resumed.best_value == first.best_value and resumed.epoch == 4
    for key, value in first.best_state["model"].items():
        assert torch.equal(resumed.best_state["model"][key], value)
    assert resumed.ema.num_updates == first.ema.num_updates > 0
    for key, value in first.ema.averages["model"].items():
        assert torch.equal(resumed.ema.averages["model"][key], value)
    # The best state is the EMA weights that valid scored, not the live weights.
    live = first.model.state_dict()
    assert not torch.equal(first.best_state["model"]["net.0.weight"], live["net.0.weight"])


def test_evaluate_runs_with_the_best_state(tmp_path: Path) -> None:
    s = solver(tmp_path, "optim.epochs=2", "best_metric.direction=max", "optim.ema.use=false")
    s.run()
    live = {k: v.clone() for k, v in s.model.state_dict().items()}
    with s.swap_best_state():
        best_eval = s.evaluate()
    assert s.history[-1]["evaluate"] == best_eval
    for key, value in s.model.state_dict().items():
        assert torch.equal(value, live[key])


def test_truncated_checkpoint_resumes_from_previous_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path
    reference = solver(folder, "optim.epochs=3").run()
    for name in ("checkpoint.th", "checkpoint_3.th"):  # both copies of epoch 3 are damaged
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 3])
    with caplog.at_level(logging.WARNING, logger="baton"):
        history = solver(folder, "optim.epochs=3").run()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("checkpoint.th is unreadable" in w for w in warnings)
    assert any("resuming from checkpoint_2.th" in w for w in warnings)
    assert history == reference  # epoch 3 ran again, exactly as the first time


def test_bf16_autocast_trains_on_cpu(tmp_path: Path) -> None:
    history = solver(tmp_path, "optim.epochs=2", "autocast=true", "autocast_dtype=bfloat16").run()
    assert history[-1]["train"]["loss"] < history[0]["train"]["loss"]


def test_fp16_needs_cuda(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the fp16 path is tested by test_fp16_grad_scaler_on_cuda")
    with pytest.raises(ConfigError, match="autocast_dtype=float16 needs a CUDA device"):
        solver(tmp_path, "autocast=true", "autocast_dtype=float16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 with GradScaler needs CUDA")
def test_fp16_grad_scaler_on_cuda(tmp_path: Path) -> None:
    s = solver(tmp_path, "optim.epochs=2", "device=cuda", "autocast=true", "autocast_dtype=float16")
    history = s.run()
    assert s.stepper.scaler is not None and history[-1]["train"]["loss"] < history[0]["train"]["loss"]
    resumed = solver(tmp_path, "optim.epochs=2", "device=cuda", "autocast=true", "autocast_dtype=float16")
    resumed.restore()
    assert resumed.stepper.scaler.get_scale() == s.stepper.scaler.get_scale()


def test_unknown_best_metric_names_the_available_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="best_metric.name='acc' is not a metric of stage 'valid' \\(it has: loss\\)"):
        solver(tmp_path, "optim.epochs=1", "best_metric.name=acc").run()


def test_no_folder_is_a_clear_error() -> None:
    cfg = example_config("x")
    cfg.xp.folder = None
    with pytest.raises(ConfigError, match="no XP folder"):
        ExampleSolver(cfg)


def test_profiler_writes_a_trace(tmp_path: Path) -> None:
    solver(tmp_path, "optim.epochs=1", "profiler.enabled=true").run()
    assert list((tmp_path / "profiler").glob("*.json*"))


def test_deterministic_and_threads(tmp_path: Path) -> None:
    try:
        solver(tmp_path, "optim.epochs=1", "deterministic=true", "num_threads=1").run()
        assert torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == 1
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.slow
def test_compile_trains_and_checkpoints_plain_keys(tmp_path: Path) -> None:
    """torch.compile in place (nn.Module.compile): state_dict keys stay those of the plain model."""
    s = solver(tmp_path, "optim.epochs=2", "compile=true")
    history = s.run()
    assert history[-1]["train"]["loss"] < history[0]["train"]["loss"]
    from baton.checkpoint import exported_weights
    from baton.tasks.example import RegressionNet

    plain = RegressionNet(16, 64, 0.1)
    plain.load_state_dict(exported_weights(tmp_path, "last"))


def test_an_epoch_without_updates_is_an_error(tmp_path: Path) -> None:
    # The training stream says why first: the items, the batch size and the world size.
    with pytest.raises(ConfigError, match=r"256 item\(s\) give 256 per rank on 1 rank\(s\), fewer than one batch of 512"):
        solver(tmp_path, "dataset.batch_size=512")  # 256 items, drop_last
    with pytest.raises(ConfigError, match="an epoch has no update: 2 training batch"):
        solver(tmp_path / "accumulating", "dataset.batch_size=128", "optim.grad_accumulation=3")


def test_two_xps_in_one_process_keep_their_logs_apart(tmp_path: Path) -> None:
    solver(tmp_path / "a", "optim.epochs=1").run()
    solver(tmp_path / "b", "optim.epochs=1").run()
    first = (tmp_path / "a" / "solver.log").read_text()
    assert first.count("Train | epoch 1") == 1


def test_valid_cap_counts_items_and_stops_after_reaching_it(tmp_path: Path) -> None:
    s = solver(tmp_path)  # valid: 64 items in batches of 32
    assert len(list(s.loader_batches(s.dataloaders["valid"], 40))) == 2
    assert len(list(s.loader_batches(s.dataloaders["valid"], 32))) == 1
    assert len(list(s.loader_batches(s.dataloaders["valid"]))) == 2
