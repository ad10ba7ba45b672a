"""SpeechBrain's experiment folder: the resolved hparams, the script, the log and the environment.

A SpeechBrain recipe starts with

    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    with open(hparams_file) as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.create_experiment_directory(hparams["output_folder"], hparams_to_save=hparams_file,
                                   overrides=overrides)

and with `import baton as sb` it keeps working: HyperPyYAML files load through the
`hyperpyyaml` package itself (so `!new:`, `!ref` and `!name:` mean what they always meant), and
the folder receives `hyperparams.yaml` (the file with overrides and references resolved), a copy
of the calling script, `log.txt` and `env.log`. Only rank 0 writes; files are written whole.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import io
import logging
import logging.config
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import distrib
from ..atomic import write_text_atomic

logger = logging.getLogger("baton")

LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


def create_experiment_directory(
    experiment_directory: str | Path,
    hyperparams_to_save: str | Path | None = None,
    overrides: Mapping[str, Any] | str | None = None,
    log_config: str | Path | None = None,
    save_env_desc: bool = True,
) -> None:
    """Create the experiment folder and start logging into its `log.txt`.

    Args:
        hyperparams_to_save: the HyperPyYAML file the run loaded; saved resolved (with
            `overrides` applied and `!ref`s filled in) as `hyperparams.yaml`.
        overrides: the overrides given to `load_hyperpyyaml` (a dict or YAML text).
        log_config: a YAML file for `logging.config.dictConfig`; its handler named
            `file_handler` is pointed at `log.txt`. Without one: INFO to the terminal and log.txt.
        save_env_desc: write `env.log` (python, torch, CUDA, git commit, installed packages).
    """
    folder = Path(experiment_directory)
    distrib.init()  # under torchrun, join the group first: only rank 0 writes
    try:
        if distrib.is_rank_zero():
            folder.mkdir(parents=True, exist_ok=True)
            if hyperparams_to_save is not None:
                _save_hyperparams(Path(hyperparams_to_save), overrides, folder / "hyperparams.yaml")
            caller = inspect.getmodule(inspect.currentframe().f_back)  # type: ignore[union-attr]
            script = getattr(caller, "__file__", None)
            if script and Path(script).is_file():
                shutil.copy(os.path.realpath(script), folder)
            _setup_logging(folder / "log.txt", log_config)
            logger.info("Beginning experiment! Experiment folder: %s", folder)
            if save_env_desc:
                write_text_atomic(folder / "env.log", environment_description())
    finally:
        distrib.barrier()  # the other ranks read the folder after rank 0 made it


def _save_hyperparams(source: Path, overrides: Mapping[str, Any] | str | None, target: Path) -> None:
    from hyperpyyaml import resolve_references

    with open(source, encoding="utf-8") as handle:
        resolved = resolve_references(handle, overrides or {})
    header = f"# Generated {time.strftime('%Y-%m-%d')} from:\n# {source.resolve()}\n# yamllint disable\n"
    write_text_atomic(target, header + unfolded(resolved.getvalue()))


def unfolded(text: str) -> str:
    """The YAML `text` with no value folded onto a second line: the dump wraps at 80 columns,
    which splits a long resolved path from its key, and a reader (or grep) then misses it.
    Round-trip loading keeps the tags (`!new:`, `!ref`), anchors and comments as they were."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.width = 1 << 20
    stream = io.StringIO()
    yaml.dump(yaml.load(text), stream)
    return stream.getvalue()


def _setup_logging(log_file: Path, log_config: str | Path | None) -> None:
    if log_config is not None:
        import yaml

        with open(log_config, encoding="utf-8") as handle:
            config = yaml.safe_load(handle)
        configured = config.setdefault("handlers", {})
        if "file_handler" in configured:
            configured["file_handler"]["filename"] = str(log_file)
        logging.config.dictConfig(config)
        return
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):  # a second experiment in one process logs to its own file
        if getattr(handler, "_baton_experiment", False):
            root.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = [logging.FileHandler(log_file)]
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in root.handlers):
        handlers.append(logging.StreamHandler())
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._baton_experiment = True  # type: ignore[attr-defined]
        root.addHandler(handler)


def environment_description() -> str:
    """What a rerun must match: host, python, torch, CUDA, git commits, installed packages."""
    from ..envinfo import environment_lines

    packages = sorted(
        f"{dist.metadata['Name']}=={dist.version}" for dist in importlib.metadata.distributions()
        if dist.metadata["Name"]
    )
    return "\n".join([*environment_lines(), "installed packages:", *packages]) + "\n"
