"""`baton new NAME`: the files of a new project, and the checks before any is written.

A project is a folder with a `baton.toml` (see `baton.config.project`), a solver module, its
YAML file, a grid and a test. The solver is a small but real audio task (white noise removed
from short tones by a 1-D conv net, data made in memory) that trains in seconds on a CPU, so
`baton run solver=NAME`, `baton grid NAME` and `pytest tests` work at once and the user edits a
working task rather than a blank page.

Nothing is overwritten: every file to write must be new. In a folder that already holds a
`baton.toml` (a second task in one project), the project's shared files (`baton.toml`,
`grids/__init__.py`, `tests/conftest.py`) are kept as they are.
"""

from __future__ import annotations

import importlib.machinery
import keyword
import os
import re
import sys
from pathlib import Path

from baton.config.project import PROJECT_FILE, Project, load_project
from baton.errors import UserError

# Names a task cannot take: they are folders or special files of the project itself.
RESERVED = ("grids", "tests", "conftest", "conf", "outputs")


def class_name(name: str) -> str:
    """'my_task' -> 'MyTaskSolver'."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_")) + "Solver"


def check_name(name: str) -> None:
    """Refuse a NAME that cannot be a module, a solver name and a config option at once.

    Raises:
        UserError: not an identifier, a Python keyword, reserved, taken by baton, or the name
            of an installed module (which would be imported instead of the project's).
    """
    if not (name.isidentifier() and name.isascii()) or keyword.iskeyword(name):
        raise UserError(
            f"'{name}' is not a valid Python identifier: a task name is a module name, so use "
            "letters, digits and _ and do not start with a digit (e.g. my_task)"
        )
    if name in RESERVED:
        raise UserError(f"'{name}' is a folder or file of the project itself; pick another name")
    taken = _baton_solver_names()
    if name in taken:
        raise UserError(f"'{name}' is the name of one of baton's own solvers ({', '.join(sorted(taken))}); pick another name")
    where = installed_module(name)
    if where is not None:
        raise UserError(
            f"'{name}' is the name of an installed module ({where}): it would be imported "
            f"instead of the project's {name}.py; pick another name"
        )


def installed_module(name: str) -> str | None:
    """Where a top-level module `name` is found outside the working directory: the standard
    library, a built-in, or a file in site-packages; None when it is free (a bare folder of
    that name, a namespace package, does not count)."""
    if name in sys.builtin_module_names or name in getattr(sys, "stdlib_module_names", ()):
        return "the standard library"
    cwd = os.getcwd()

    def elsewhere(entry: str) -> bool:
        try:
            return os.path.abspath(entry or ".") != cwd
        except (OSError, ValueError):
            return False

    spec = importlib.machinery.PathFinder.find_spec(name, [p for p in sys.path if elsewhere(p)])
    if spec is None or spec.origin in (None, "namespace"):
        return None
    return str(spec.origin)


def _baton_solver_names() -> set[str]:
    from baton.config.search import BATON_CONF, group_options
    from baton.solver.registry import solver_names

    options = {option.split("/")[0] for option in group_options("solver", [BATON_CONF])}
    return options | set(solver_names())


def plan(name: str, folder: Path) -> dict[Path, str]:
    """Every file `baton new NAME` writes in `folder`, with its text, checked: none exists.

    Raises:
        UserError: a bad NAME, an existing file (all of them named), or an existing project
            file that does not list `conf` and `grids`, where this task's files go.
    """
    check_name(name)
    folder = folder.absolute()
    project_file = folder / PROJECT_FILE
    project = load_project(project_file) if project_file.is_file() else None
    if project is not None:
        _check_layout(project)
    values = {"__NAME__": name, "__CLASS__": class_name(name)}
    imports = "" if project is None or name in project.imports else f"imports: [{name}]\n"
    files = {
        PROJECT_FILE: PROJECT_TOML,
        f"{name}.py": SOLVER,
        f"conf/solver/{name}.yaml": SOLVER_YAML.replace("__IMPORTS__\n", imports),
        "grids/__init__.py": GRIDS_INIT,
        f"grids/{name}.py": GRID,
        "tests/conftest.py": CONFTEST,
        f"tests/test_{name}.py": TEST,
    }
    if project is not None:  # one more task in a project: its shared files stay as they are
        shared = (PROJECT_FILE, "grids/__init__.py", "tests/conftest.py")
        files = {k: v for k, v in files.items() if k not in shared or not (folder / k).exists()}
    existing = [relative for relative in files if (folder / relative).exists() or (folder / relative).is_symlink()]
    if existing:
        raise UserError(
            f"baton new {name}: not overwriting {', '.join(existing)} in {folder}; "
            "remove them, pick another name, or use --dir DIR"
        )
    return {folder / relative: _fill(text, values) for relative, text in files.items()}


def _check_layout(project: Project) -> None:
    conf, grids = project.root / "conf", "grids"
    if conf.resolve() not in [d.resolve() for d in project.config_dirs] or grids not in project.grid_packages:
        raise UserError(
            f"the project file {project.file} does not list config_dirs = [\"conf\", ...] and "
            f"grid_package = \"grids\", where baton new writes; add them, or use --dir DIR"
        )


def _fill(text: str, values: dict[str, str]) -> str:
    """Replace the placeholders in one pass (a NAME never reads as a placeholder)."""
    return re.sub("|".join(map(re.escape, values)), lambda match: values[match.group()], text)


def write(files: dict[Path, str]) -> None:
    """Write the planned files, creating folders; an existing file is never replaced (exclusive
    create), so a file that appeared since the check is an error, not overwritten."""
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as handle:
            handle.write(text)


PROJECT_TOML = """\
# The baton project file. `baton run`, `baton grid` and the other commands use the nearest
# baton.toml up from the working directory; paths here are relative to this file. The command
# line (--config-dir, --package, xp.root=...) and BATON_* variables come first.

# Config folders, laid out like baton/conf (solver/, model/, dset/, teams/).
config_dirs = ["conf"]
# Grid files: `baton grid NAME` runs grids/NAME.py.
grid_package = "grids"
# Modules imported before a solver is looked up, so their @register_solver runs.
imports = ["__NAME__"]
# Where XPs live; the default is outputs/ next to this file.
# xp_root = "outputs"
"""

SOLVER = '''\
"""__NAME__: a StandardSolver that removes white noise from short tones.

Written by `baton new __NAME__`: a small, complete task that trains in seconds on a
CPU. Make it yours: the data in `build_dataloaders`, the model in `build_model`, the
loss in `run_step`, the metrics in `evaluate` and the samples in `generate`. The
engine owns the loop, checkpoints and exact resume, EMA, the best state, logging and
several processes. Settings: conf/solver/__NAME__.yaml, or the command line
(`baton run solver=__NAME__ task.noise=0.5`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from baton.data import write_wav
from baton.data.rng import seed_worker
from baton.data.sampler import ResumableSampler
from baton.metrics.audio import si_snr
from baton.metrics.averager import Averager
from baton.optim import build_lr_scheduler, build_optimizer
from baton.solver import StandardSolver, register_solver
from baton.solver.runtime import per_rank_batch_size
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def noisy_tones(
    num_items: int, length: int, sample_rate: int, noise: float, seed: int
) -> TensorDataset:
    """(noisy, clean) pairs of [1, length] clips: a sine of random pitch, plus noise."""
    gen = torch.Generator().manual_seed(seed)
    time = torch.arange(length) / sample_rate
    freq = 100 + 900 * torch.rand(num_items, 1, generator=gen)  # Hz
    phase = 2 * math.pi * torch.rand(num_items, 1, generator=gen)
    clean = 0.5 * torch.sin(2 * math.pi * freq * time + phase)
    noisy = clean + noise * torch.randn(num_items, length, generator=gen)
    return TensorDataset(noisy.unsqueeze(1), clean.unsqueeze(1))


class Denoiser(nn.Module):
    """A small 1-D conv net that estimates the noise and subtracts it."""

    def __init__(self, hidden: int, kernel_size: int) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.net = nn.Sequential(
            nn.Conv1d(1, hidden, kernel_size, padding=pad),
            nn.GELU(),
            nn.Conv1d(hidden, hidden, kernel_size, padding=pad),
            nn.GELU(),
            nn.Conv1d(hidden, 1, kernel_size, padding=pad),
        )

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        return noisy - self.net(noisy)


@register_solver("__NAME__")
class __CLASS__(StandardSolver):
    def build_dataloaders(self) -> None:
        """Called first: fill self.dataloaders ("train" required, "valid" optional)."""
        task, data = self.cfg.task, self.cfg.dataset
        batch_size = per_rank_batch_size(int(data.batch_size))  # global / world size
        sizes = {"train": task.num_train, "valid": task.num_valid}
        sizes["evaluate"] = task.num_valid
        for index, (split, num_items) in enumerate(sizes.items()):
            seed = task.data_seed + index
            dataset = noisy_tones(
                num_items, task.length, task.sample_rate, task.noise, seed
            )
            train = split == "train"
            self.dataloaders[split] = DataLoader(
                dataset,
                batch_size=batch_size,
                # Resume-exact data order: the sampler's position is checkpointed.
                sampler=ResumableSampler(  # evaluation shards unpadded: each item counts once
                    dataset, shuffle=train and data.shuffle, seed=self.cfg.seed, pad=train
                ),
                drop_last=train and data.drop_last,
                num_workers=data.num_workers,
                worker_init_fn=seed_worker,
                generator=torch.Generator(),  # never draws from the training RNG
            )

    @classmethod
    def build_model_from_config(cls, cfg: Any) -> Denoiser:
        """The model alone, untrained: `build_model` trains it, and
        `baton.load_model(SIG)` rebuilds it to load an XP's weights."""
        return Denoiser(cfg.task.hidden, cfg.task.kernel_size)

    def build_model(self) -> None:
        """Called once the loaders exist: models, optimizers, what checkpoints hold."""
        self.model = self.build_model_from_config(self.cfg).to(self.device)
        optimizer = build_optimizer(self.model, self.cfg.optim)
        scheduler = build_lr_scheduler(optimizer, self.cfg.schedule, self.total_updates)
        self.stepper = self.make_stepper(optimizer, scheduler, self.model)
        self.register_stateful("model", "stepper")  # checkpointed, restored on resume
        self.register_best("model")  # kept at the best `best_metric`
        self.register_ema("model")  # averaged when optim.ema.use

    def run_step(self, idx: int, batch: Any, metrics: dict[str, Any]) -> dict[str, Any]:
        """One batch of train or valid; returns its metrics (averaged by the stage)."""
        noisy, clean = self.to_device(batch)
        with self.autocast():
            loss = F.mse_loss(self.model(noisy).float(), clean)
        if self.is_training:
            metrics.update(self.stepper.step(loss))  # backward, clip, optimizer, LR
        metrics["loss"] = loss
        return metrics

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Every `evaluate.every` epochs and at the last, with the best state loaded."""
        average = Averager()  # weighted by batch size, reduced across ranks
        for _, batch in self.loader_batches(self.dataloaders["evaluate"]):
            noisy, clean = self.to_device(batch)
            before, after = si_snr(noisy, clean), si_snr(self.model(noisy), clean)
            metrics = {"si_snr": after.mean(), "si_snr_gain": (after - before).mean()}
            average.update(metrics, count=len(clean))
        return average.result()

    @torch.no_grad()
    def generate(self) -> dict[str, float]:
        """Every `generate.every` epochs and at the last: WAVs in samples/<epoch>/."""
        noisy, clean = self.dataloaders["evaluate"].dataset[:3]
        denoised = self.model(noisy.to(self.device)).cpu()
        folder = self.folder / "samples" / str(self.epoch)
        folder.mkdir(parents=True, exist_ok=True)
        rate = int(self.cfg.task.sample_rate)
        kinds = {"noisy": noisy, "denoised": denoised, "clean": clean}
        for index in range(len(clean)):
            for kind, wavs in kinds.items():
                write_wav(folder / f"{index}_{kind}.wav", wavs[index], rate)
        return {}
'''

SOLVER_YAML = """\
# @package _global_
# __NAME__ (__NAME__.py): white noise removed from short tones; trains in seconds on a CPU.
# task.* are this solver's own keys; the rest extends baton's solver/default.yaml, which lists
# every shared key (optim, schedule, dataset, checkpoint, logging, ...).
defaults:
  - /solver/default
  - _self_

solver: __NAME__
__IMPORTS__

task:
  num_train: 512        # training clips, made in memory from data_seed
  num_valid: 128        # clips in each of the valid and evaluate splits
  length: 1024          # samples per clip
  sample_rate: 8000
  noise: 0.3            # standard deviation of the added white noise
  hidden: 16            # channels of the conv net
  kernel_size: 9
  data_seed: 1234

dataset:
  batch_size: 32

optim:
  epochs: 4
  lr: 3e-3
  ema:
    use: true
    decay: 0.99

best_metric:            # the state evaluate, generate and `baton export` use
  stage: valid
  name: loss
  direction: min
"""

GRIDS_INIT = '''\
"""The project's grids: `baton grid NAME` runs grids/NAME.py (see baton.toml)."""
'''

GRID = '''\
"""A learning-rate sweep of __NAME__: `baton grid __NAME__` (-j 2: two XPs at a time)."""

from baton.xp.explore import Launcher, explorer


@explorer(metrics=["train.loss", "valid.loss", "evaluate.si_snr"])
def explore(launcher: Launcher) -> None:
    launcher.bind_(solver="__NAME__")  # every XP below gets this
    for lr in [1e-3, 3e-3]:
        launcher(optim={"lr": lr})  # one XP per call
'''

CONFTEST = '''\
"""Makes the project's modules importable in its tests, wherever pytest starts."""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.append(ROOT)
'''

TEST = '''\
"""__NAME__ learns: a short run whose loss falls. `python -m pytest tests` runs it."""

from pathlib import Path

from baton.config import compose

from __NAME__ import __CLASS__

PROJECT = Path(__file__).resolve().parents[1]


def test___NAME___learns(tmp_path: Path):
    overrides = ["solver=__NAME__", "optim.epochs=2", "task.num_train=256"]
    overrides += ["task.num_valid=64", "logging.tensorboard=false"]
    cfg = compose(overrides, config_dir=str(PROJECT / "conf"))
    with __CLASS__(cfg, folder=tmp_path) as solver:  # in tmp_path, not outputs/
        history = solver.run()
    assert len(history) == 2
    assert history[-1]["train"]["loss"] < history[0]["train"]["loss"]
    # Better than leaving the noise in:
    assert history[-1]["valid"]["loss"] < cfg.task.noise**2
    assert (tmp_path / "samples" / "2" / "0_denoised.wav").is_file()
'''
