"""Experiment trackers, read back with their own tools: MLflow's client, TensorBoard's event
reader, W&B's offline run files, the CSV. A real XP writes to all four at once."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

import baton
from baton.errors import ConfigError
from baton.loggers.base import RunInfo
from baton.loggers.fanout import Trackers
from tests.loggers import wandb_records

pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
pytest.importorskip("wandb", reason="the wandb extra is not installed")

ALL = "logging.loggers=[tensorboard,mlflow,wandb,csv]"
EXAMPLE = ["solver=example", "optim.epochs=2", "task.num_train=256", "logging.progress=false", ALL]


@pytest.fixture
def xp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BATON_XP_DIR", str(tmp_path / "xps"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    return tmp_path / "xps"


def history_metrics(folder: Path) -> dict[str, dict[int, float]]:
    """{"stage/metric": {epoch: value}} from history.jsonl."""
    found: dict[str, dict[int, float]] = {}
    for epoch, line in enumerate((folder / "history.jsonl").read_text().splitlines(), start=1):
        for stage, metrics in json.loads(line).items():
            for name, value in metrics.items():
                found.setdefault(f"{stage}/{name}", {})[epoch] = value
    return found


def mlflow_run(root: Path, sig: str):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("baton")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`baton.sig` = '{sig}'")
    assert len(runs) == 1, "one MLflow run per XP"
    return client, runs[0]


def test_one_xp_writes_every_metric_to_all_four_trackers(xp_root: Path) -> None:
    result = baton.run(EXAMPLE)
    expected = history_metrics(result.folder)
    assert "train/loss" in expected and "evaluate/mse" in expected

    client, run = mlflow_run(xp_root, result.sig)
    assert run.info.run_name == result.sig and run.info.status == "FINISHED"
    assert run.data.params["sig"] == result.sig
    assert run.data.params["optim.epochs"] == "2" and run.data.params["task.num_train"] == "256"
    for key, by_epoch in expected.items():
        logged = {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
        assert logged == pytest.approx(by_epoch), key

    (wandb_file,) = result.folder.glob("wandb/offline-run-*/run-*.wandb")
    assert wandb_records.run_id(wandb_file) == result.sig
    logged: dict[str, dict[int, float]] = {}
    for row in wandb_records.history(wandb_file):
        for key, value in row.items():
            if not key.startswith("_"):
                logged.setdefault(key, {})[int(row["_step"])] = json.loads(value)
    for key, by_epoch in expected.items():
        assert logged[key] == pytest.approx(by_epoch), key

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(result.folder / "tensorboard")).Reload()
    for key, by_epoch in expected.items():
        assert {e.step: e.value for e in events.Scalars(key)} == pytest.approx(by_epoch), key

    with open(result.folder / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    from_csv: dict[str, dict[int, float]] = {}
    for row in rows:
        from_csv.setdefault(f"{row['stage']}/{row['metric']}", {})[int(row["epoch"])] = float(row["value"])
    assert from_csv == expected


def test_a_resumed_xp_continues_its_runs_without_logging_a_step_twice(xp_root: Path) -> None:
    first = baton.run(EXAMPLE)
    # Roll back to epoch 1's checkpoint, as a user restoring a backup does: epoch 2 runs again.
    shutil.copy(first.folder / "checkpoint_1.th", first.folder / "checkpoint.th")
    again = baton.run(EXAMPLE)
    assert again.sig == first.sig and len(again.history) == 2
    client, run = mlflow_run(xp_root, first.sig)
    for key in history_metrics(first.folder):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert sorted(steps) == [1, 2], key  # epoch 2 was trained twice, logged once
    # Nothing new to log in the second run: W&B was not even started again.
    assert len(list(first.folder.glob("wandb/offline-run-*/run-*.wandb"))) == 1


def test_a_wandb_run_killed_and_resumed_continues_under_the_same_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = RunInfo(tmp_path, "resume01", {"lr": 0.1})
    first = Trackers(["wandb"], {"wandb": {"mode": "offline"}}, run)
    first.log_metrics("train", {"loss": 1.0}, 1)
    first.log_metrics("train", {"loss": 0.5}, 2)
    first.close(False)  # killed during epoch 3
    resumed = Trackers(["wandb"], {"wandb": {"mode": "offline"}}, run)
    resumed.log_metrics("train", {"loss": 0.5}, 2)  # epoch 2 again, from an older checkpoint
    resumed.log_metrics("train", {"loss": 0.25}, 3)
    resumed.close(True)
    files = sorted(tmp_path.glob("wandb/offline-run-*/run-*.wandb"), key=lambda p: p.stat().st_mtime)
    assert len(files) == 2 and {wandb_records.run_id(f) for f in files} == {"resume01"}  # `wandb sync` joins them
    steps = [[int(row["_step"]) for row in wandb_records.history(f) if "train/loss" in row] for f in files]
    assert steps == [[1, 2], [3]]


def test_audio_images_and_text_reach_the_trackers_that_take_them(tmp_path: Path) -> None:
    run = RunInfo(tmp_path, "media0001", {"lr": 0.1}, root=tmp_path)
    trackers = Trackers(["tensorboard", "mlflow", "csv"], {"mlflow": {}}, run)
    tone = (0.5 * np.sin(np.arange(8000) * 2 * np.pi * 440 / 16000)).astype(np.float32)
    from baton.loggers.spectrogram import spectrogram_image

    image = spectrogram_image([tone, tone[::-1].copy()], 16000)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    trackers.log_audio("generate/0_original", tone, 16000, 1)
    trackers.log_image("generate/0_mel", image, 1)
    trackers.log_text("generate/0_label", "note", 1)
    trackers.close(True)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"audio": 0, "images": 0}).Reload()
    (audio,) = events.Audio("generate/0_original")
    assert audio.sample_rate == 16000 and audio.length_frames == 8000
    (picture,) = events.Images("generate/0_mel")
    assert (picture.height, picture.width) == image.shape[:2]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = (tmp_path / ".mlflow_run_id").read_text().strip()
    artifacts = {a.path for a in client.list_artifacts(run_id, "audio/step_1")}
    assert artifacts == {"audio/step_1/generate_0_original.wav"}
    assert list((tmp_path / "mlflow_artifacts").rglob("generate_0_original.wav"))  # beside the store, not in ./mlruns


def test_a_failing_tracker_warns_once_and_training_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = RunInfo(tmp_path, "broken01", root=tmp_path)
    (tmp_path / "a_file").write_text("")  # a store under a file: it cannot be created
    trackers = Trackers(["csv", "mlflow"], {"mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/a_file/mlflow.db"}}, run)
    with caplog.at_level(logging.WARNING, logger="baton"):
        for step in (1, 2, 3):
            trackers.log_metrics("train", {"loss": 1.0 / step}, step)
        trackers.close(True)  # the trackers' thread has written everything queued
    warnings = [r.getMessage() for r in caplog.records if "logger mlflow" in r.getMessage()]
    assert len(warnings) == 1 and "training goes on" in warnings[0]
    assert (tmp_path / "metrics.csv").read_text().count("train,loss") == 3  # the others kept logging


def test_unknown_or_missing_trackers_are_one_line_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = RunInfo(tmp_path, "x")
    with pytest.raises(ConfigError, match="unknown logger 'neptune'; use tensorboard, mlflow, wandb, csv"):
        Trackers(["neptune"], {}, run)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'baton\[wandb\]'"):
        Trackers(["wandb"], {}, run)


def test_a_tracker_that_cannot_start_stops_the_run_before_training(tmp_path: Path) -> None:
    """Asked for and not working, a tracker is no reason to train for a week untracked: the run
    stops with one line before its first update; `logging.required=false` trains without it."""
    from baton.tasks.example import ExampleSolver
    from tests.helpers import example_config

    (tmp_path / "a_file").write_text("")  # a store under a file: it cannot be created
    broken = ["logging.loggers=[csv,mlflow]", f"logging.mlflow.tracking_uri=sqlite:///{tmp_path}/a_file/mlflow.db",
              "logging.tensorboard=false", "optim.epochs=1", "task.num_train=64", "task.num_valid=32"]
    with ExampleSolver(example_config(tmp_path / "required", *broken)) as solver:
        with pytest.raises(ConfigError, match=r"^logger mlflow could not start \(.*\); fix logging\.mlflow\.\*, "
                                              r"drop mlflow from logging.loggers, or set logging.required=false"):
            solver.run()
        assert solver.update_count == 0 and not (tmp_path / "required" / "checkpoint.th").exists()
    with ExampleSolver(example_config(tmp_path / "optional", *broken, "logging.required=false")) as solver:
        solver.run()
    assert "train,loss" in (tmp_path / "optional" / "metrics.csv").read_text()


def test_a_new_mlflow_store_keeps_its_housekeeping_out_of_the_output(tmp_path: Path) -> None:
    from tests.xp.conftest import QUICK, baton_cli

    result = baton_cli("run", *QUICK, "optim.epochs=1", "logging.loggers=[mlflow]", env={"BATON_XP_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "mlflow.db").is_file()  # the store was created by this run
    output = result.stdout + result.stderr
    assert "Valid | epoch 1" in output
    assert "database tables" not in output, output


def test_a_tracker_the_run_goes_on_without_shows_in_info(tmp_path: Path) -> None:
    """`logging.required=false`: one warning, and `baton info` says which tracker was off and why."""
    from tests.xp.conftest import QUICK, baton_cli

    (tmp_path / "a_file").write_text("")  # a store under a file: it cannot be created
    env = {"BATON_XP_DIR": str(tmp_path / "xps")}
    args = [*QUICK, "optim.epochs=1", "logging.loggers=[csv,mlflow]", "logging.required=false",
            f"logging.mlflow.tracking_uri=sqlite:///{tmp_path}/a_file/mlflow.db"]
    result = baton_cli("run", *args, env=env)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert output.count("logger mlflow could not start") == 1
    sig = baton_cli("run", "--dry_run", *args, env=env).stdout.split()[1]
    info = baton_cli("info", "-f", sig, env={**env, "COLUMNS": "300"}).stdout
    (row,) = [line for line in info.splitlines() if line.startswith("trackers")]
    assert "off in the last run: mlflow (could not start: " in row
