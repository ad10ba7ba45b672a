"""MLflow: one run per XP, named by its signature, in a local store by default.

The store is `logging.mlflow.tracking_uri`, by default a SQLite store `<xp root>/mlflow.db` shared
by the XP root's XPs (`mlflow ui --backend-store-uri sqlite:///<xp root>/mlflow.db`), with
artifacts (audio, images) in `<xp root>/mlflow_artifacts`. The run id is kept in the
XP folder (`.mlflow_run_id`), so a resumed XP continues its run. Parameters are the config delta
(what makes this XP differ from the defaults) and the signature.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_text_atomic
from .base import RunInfo

RUN_ID_FILE = ".mlflow_run_id"
STORE = "mlflow.db"  # the default store: SQLite (MLflow 3 retired its file store)
ARTIFACTS = "mlflow_artifacts"  # audio, images and text of the store's runs
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter's value


class MLflowLogger:
    name = "mlflow"

    @staticmethod
    def _client(run: RunInfo, options: Any) -> Any:
        import logging

        from mlflow import MlflowClient

        # A new SQLite store says "Creating initial MLflow database tables..." and "Updating
        # database tables" at INFO, among the training's own lines: MLflow's housekeeping, not
        # the run's. Its warnings and errors still show.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        home = (run.root or run.folder).absolute()
        return MlflowClient(tracking_uri=str(options.get("tracking_uri") or f"sqlite:///{home / STORE}"))

    @classmethod
    def probe(cls, run: RunInfo, options: Any = None) -> None:
        """Open the tracking store and read the experiment, as starting does (a refused or
        unwritable store fails here, before training), without creating a run."""
        options = options or {}
        cls._client(run, options).get_experiment_by_name(str(options.get("experiment") or "baton"))

    def __init__(self, run: RunInfo, options: Any = None) -> None:
        options = options or {}
        home = (run.root or run.folder).absolute()
        self.client = self._client(run, options)
        experiment_name = str(options.get("experiment") or "baton")
        experiment = self.client.get_experiment_by_name(experiment_name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:  # artifacts beside the store, not in ./mlruns of whatever the working directory is
            experiment_id = self.client.create_experiment(experiment_name, artifact_location=(home / ARTIFACTS).as_uri())
        self.folder = run.folder
        resumed = self._resumed_run()
        self.new_run = resumed is None
        if resumed is None:
            created = self.client.create_run(experiment_id, run_name=run.sig, tags={"baton.sig": str(run.sig)})
            self.run_id: str = created.info.run_id
            write_text_atomic(run.folder / RUN_ID_FILE, self.run_id + "\n")
        else:
            self.run_id = resumed
            self.client.update_run(self.run_id, status="RUNNING")

    def _resumed_run(self) -> str | None:
        path = self.folder / RUN_ID_FILE
        if not path.is_file():
            return None
        run_id = path.read_text().strip()
        try:
            self.client.get_run(run_id)
        except Exception:  # deleted from the store, or another store: start a new run
            return None
        return run_id

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        if not self.new_run:  # MLflow refuses to change a logged parameter; a resume has them
            return
        entries = [Param(key, str(value)[:MAX_PARAM_LENGTH]) for key, value in params.items()]
        for start in range(0, len(entries), 100):  # MLflow's batch limit
            self.client.log_batch(self.run_id, params=entries[start:start + 100])

    def log_metrics(self, stage: str, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        entries = [Metric(f"{stage}/{key}", float(value), now, step) for key, value in metrics.items() if isinstance(value, (int, float))]
        if entries:
            self.client.log_batch(self.run_id, metrics=entries)

    def log_audio(self, tag: str, wav: np.ndarray, sample_rate: int, step: int) -> None:
        import soundfile

        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / f"{tag.replace('/', '_')}.wav"
            soundfile.write(path, wav.T if wav.ndim == 2 else wav, sample_rate)
            self.client.log_artifact(self.run_id, str(path), artifact_path=f"audio/step_{step}")

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        self.client.log_image(self.run_id, image, key=tag.replace("/", "_"), step=step)

    def log_text(self, tag: str, text: str, step: int) -> None:
        self.client.log_text(self.run_id, text, f"text/step_{step}/{tag.replace('/', '_')}.txt")

    def flush(self) -> None:
        """Every call above is written through at once."""

    def close(self, finished: bool) -> None:
        self.client.set_terminated(self.run_id, status="FINISHED" if finished else "KILLED")
