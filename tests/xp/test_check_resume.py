"""`baton check-resume`: a task that resumes exactly is said to, and each way a user's task
breaks exact resume is caught with its diagnosis. The faults are planted in a small project
written into tmp_path (faults.py + one solver YAML each), as a user's own code would be."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from baton.errors import UserError
from baton.xp.check_resume import ResumeCheck, check_resume
from tests.xp.conftest import baton_cli

# The example task, small: 8 updates per epoch, 2 epochs; stopped at update 10 (epoch 2).
TINY = ["task.num_train=128", "task.num_valid=32", "dataset.batch_size=16", "optim.epochs=2",
        "logging.tensorboard=false", "num_threads=1"]

FAULTS = '''
"""Tasks that break exact resume, each in one way a user's task does."""
import random

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from baton.data.rng import sample_generator
from baton.solver import register_solver
from baton.tasks.example import ExampleSolver


def rewrap(solver, make):
    """The train loader again, over make(its dataset)."""
    train = solver.dataloaders["train"]
    solver.dataloaders["train"] = DataLoader(
        make(train.dataset), batch_size=train.batch_size, sampler=train.sampler, drop_last=train.drop_last,
        num_workers=train.num_workers, worker_init_fn=train.worker_init_fn, generator=train.generator)


class GlobalNoise(Dataset):
    """Input noise from the global RNG in __getitem__."""
    def __init__(self, base):
        self.base = base
    def __len__(self):
        return len(self.base)
    def __getitem__(self, index):
        x, y = self.base[index]
        return x + 0.1 * random.random(), y


class CountingWrapper(Dataset):
    """Per-(epoch, item) noise, but its set_epoch drops the epoch it is given and counts calls."""
    def __init__(self, base):
        self.base, self.epoch = base, 0
    def set_epoch(self, epoch):
        self.epoch += 1
    def __len__(self):
        return len(self.base)
    def __getitem__(self, index):
        x, y = self.base[index]
        return x + 0.1 * torch.randn(x.shape, generator=sample_generator(0, self.epoch, index)), y


class RunningMean(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
    def update(self, x):
        self.mean.mul_(0.9).add_(0.1 * x.mean(0))


@register_solver("global_noise")
class GlobalNoiseSolver(ExampleSolver):
    def build_dataloaders(self):
        super().build_dataloaders()
        rewrap(self, GlobalNoise)


@register_solver("counting_wrapper")
class CountingWrapperSolver(ExampleSolver):
    def build_dataloaders(self):
        super().build_dataloaders()
        rewrap(self, CountingWrapper)


@register_solver("unregistered_buffer")
class UnregisteredBufferSolver(ExampleSolver):
    def build_model(self):
        super().build_model()
        self.normalizer = RunningMean(self.cfg.task.dim)  # changed in run_step, never registered

    def run_step(self, idx, batch, metrics):
        x, y = batch
        if self.is_training:
            self.normalizer.update(x)
        return super().run_step(idx, (x - self.normalizer.mean, y), metrics)


@register_solver("crashing")
class CrashingSolver(ExampleSolver):
    def run_step(self, idx, batch, metrics):
        if self.is_training and self.update_count == 3:
            raise RuntimeError("a bug at update 3")
        return super().run_step(idx, batch, metrics)


@register_solver("unregistered_scheduler")
class UnregisteredSchedulerSolver(ExampleSolver):
    def build_model(self):
        super().build_model()
        optimizer = self.stepper.optimizer
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + step))

    def run_step(self, idx, batch, metrics):
        metrics = super().run_step(idx, batch, metrics)
        if self.is_training:
            self.scheduler.step()  # built and stepped here, never registered
        return metrics
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's project: faults.py and conf/solver/<fault>.yaml for each fault, as the cwd."""
    (tmp_path / "faults.py").write_text(textwrap.dedent(FAULTS))
    solvers = tmp_path / "conf" / "solver"
    solvers.mkdir(parents=True)
    for name in ("global_noise", "counting_wrapper", "unregistered_buffer", "unregistered_scheduler", "crashing"):
        (solvers / f"{name}.yaml").write_text(
            f"# @package _global_\ndefaults:\n  - /solver/example\n  - _self_\nsolver: {name}\nimports: [faults]\n"
        )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # as `baton` makes the working directory importable
    monkeypatch.setenv("BATON_XP_DIR", str(tmp_path / "outputs"))
    return tmp_path


def check(project: Path, solver: str, *extra: str, **options) -> ResumeCheck:
    options.setdefault("stops", ["term"])
    return check_resume([f"solver={solver}", *TINY, *extra], config_dir=[str(project / "conf")], at=[10], **options)


def only_verdict(result: ResumeCheck) -> tuple[str, str]:
    [verdict] = result.verdicts
    assert verdict.diagnosis is not None and verdict.fix is not None
    return verdict.diagnosis, verdict.fix


def test_the_example_task_resumes_exactly_after_sigterm_and_sigkill(project: Path) -> None:
    # SIGKILL at 12 with a checkpoint every 6 updates: the resume redoes updates 7-12, across
    # the end of epoch 1 (valid, best state, the end-of-epoch checkpoint).
    result = check_resume(["solver=example", *TINY], at=[12])
    assert result.exact, [(v.name, v.diagnosis) for v in result.verdicts]
    assert result.updates == 16
    assert [v.name for v in result.verdicts] == ["SIGTERM at update 12", "SIGKILL at update 12"]
    assert all(where is None for v in result.verdicts for where in v.rows.values())
    # Scratch folders only, removed afterwards: the XP's own folder was never made.
    assert not (project / "outputs" / "xps").exists()
    assert not (project / "outputs" / "check-resume").exists()


def test_an_unregistered_buffer_is_named(project: Path) -> None:
    result = check(project, "unregistered_buffer")
    assert not result.exact
    diagnosis, fix = only_verdict(result)
    assert result.verdicts[0].first_update == 11  # the first update after the resume
    assert diagnosis.startswith("self.normalizer (RunningMean) is not registered, and its 'mean' after update 11 differs")
    assert fix == "register_stateful('normalizer') in build_model, so checkpoints hold it"
    assert result.verdicts[0].rows["batches"] is None  # the data was the same
    assert result.verdicts[0].rows["weights"] is not None


@pytest.mark.slow  # a planted fault beside test_an_unregistered_buffer_is_named's, which stays in the fast suite
def test_an_unregistered_scheduler_is_named_with_the_learning_rate(project: Path) -> None:
    result = check(project, "unregistered_scheduler")
    diagnosis, fix = only_verdict(result)
    assert diagnosis.startswith("self.scheduler (LambdaLR) is not registered, and its 'last_epoch' after update 11")
    assert "the learning rate differs too ('stepper'" in diagnosis
    assert fix.startswith("pass it to make_stepper(optimizer, self.scheduler, ...)")


@pytest.mark.slow  # a planted fault beside test_an_unregistered_buffer_is_named's, which stays in the fast suite
def test_a_wrapper_that_drops_the_epoch_of_set_epoch_is_named(project: Path) -> None:
    result = check(project, "counting_wrapper")
    diagnosis, fix = only_verdict(result)
    assert diagnosis.startswith("the batch at update 11 differs from the uninterrupted run's at the same data position: "
                                "CountingWrapper.set_epoch does not take the epoch it is given")
    assert fix.startswith("in CountingWrapper.set_epoch, store the epoch it is given (self.epoch = epoch)")
    assert result.verdicts[0].rows["data order"] is None  # same positions, other items


@pytest.mark.slow  # a planted fault beside test_an_unregistered_buffer_is_named's, which stays in the fast suite
def test_a_dataset_drawing_from_the_global_rng_is_caught(project: Path) -> None:
    """With no workers the draws stay in the main process, whose RNG a checkpoint restores: the
    runs agree, and the probe still says why the task is not exact."""
    result = check(project, "global_noise")
    assert result.verdicts[0].exact
    assert not result.exact
    assert result.data is not None
    assert "the dataset's randomness does not come from (seed, epoch, item)" in result.data[0]
    assert "dataset.num_workers=0" in result.data[0]
    assert result.data[1].startswith("draw per-item randomness from baton.data.rng.sample_generator(seed, epoch, index)")


@pytest.mark.slow
def test_a_dataset_drawing_from_the_global_rng_diverges_with_workers(project: Path) -> None:
    result = check(project, "global_noise", "dataset.num_workers=2")
    diagnosis, _ = only_verdict(result)
    assert diagnosis.startswith("the batch at update 11 differs from the uninterrupted run's at the same data position: "
                                "the dataset's randomness does not come from (seed, epoch, item)")


def test_a_stop_point_outside_the_run_is_one_line(project: Path) -> None:
    with pytest.raises(UserError, match=r"^--at 16: the runs train 16 updates; stop at 1\.\.15$"):
        check_resume(["solver=example", *TINY], at=[16], stops=["term"])
    assert not (project / "outputs" / "check-resume").exists()


def test_a_run_that_fails_is_one_line_and_its_log_is_kept(project: Path) -> None:
    with pytest.raises(UserError, match=r"^check-resume: the uninterrupted run failed \(RuntimeError: a bug at update 3\); "
                       r"its log is (\S+)$") as failed:
        check(project, "crashing")
    log = Path(str(failed.value).rsplit(" ", 1)[1])
    assert "Traceback" in log.read_text() and log.is_relative_to(project / "outputs" / "check-resume")


def test_the_command_prints_the_verdict_and_exits_1_when_not_exact(project: Path) -> None:
    done = baton_cli("check-resume", "solver=unregistered_buffer", *TINY, "--updates", "12", "--at", "6",
                     "--stops", "term", "--config-dir", str(project / "conf"), cwd=project,
                     env={"BATON_XP_DIR": str(project / "outputs")})
    assert done.returncode == 1, done.stderr
    assert "SIGTERM at update 6" in done.stdout
    assert "SIGTERM at update 6: self.normalizer (RunningMean) is not registered" in done.stdout
    assert "  fix: register_stateful('normalizer') in build_model, so checkpoints hold it" in done.stdout
    assert "resumes NOT exact" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_ranks_resume_exactly_and_each_rank_is_compared(project: Path, strategy: str) -> None:
    """`-d --nproc 2`: every run is 2 gloo processes. Ranks agree on a stop every 10 updates and
    at each epoch's end: the SIGTERM at update 5 stops the run at the end of epoch 1 (update 8).
    Under FSDP each rank records its own shards and resumes from sharded checkpoints."""
    result = check_resume(["solver=example", *TINY, f"distributed.strategy={strategy}"], at=[5], nproc=2)
    assert result.exact, [(v.name, v.diagnosis) for v in result.verdicts]
    assert [v.name for v in result.verdicts] == ["SIGTERM at update 5 (stopped at 8)", "SIGKILL at update 5"]


@pytest.mark.slow
def test_an_unregistered_buffer_is_named_with_its_rank(project: Path) -> None:
    result = check(project, "unregistered_buffer", nproc=2)
    diagnosis, _ = only_verdict(result)
    assert diagnosis.startswith("rank 0: self.normalizer (RunningMean) is not registered, and its 'mean' after update 11")


# Each built-in task, small (a few updates per epoch, 2 epochs), stopped in its second half.
COMMON = ["logging.tensorboard=false", "num_threads=1"]
CODEC = ["solver=compression/debug", "model.ratios=[8,5,4]", "optim.epochs=1", "optim.updates_per_epoch=4",
         "dataset.batch_size=8", "dataset.segment_duration=0.5", "evaluate.n_q=[4]", "generate.num_samples=1"]
BUILT_IN = {
    "compression": ["solver=compression/debug", "optim.epochs=2", "optim.updates_per_epoch=4", "dataset.batch_size=4",
                    "evaluate.n_q=[4]", "generate.num_samples=1", "dataset.segment_duration=0.5", "model.ratios=[8,5,4]"],
    "classification": ["solver=classification/debug", "optim.epochs=2", "model.channels=[8,16]", "model.n_mels=32",
                       "model.embedding_dim=32", "dataset.segment_duration=0.5", "dataset.batch_size=32"],
    "gan": ["solver=gan/debug", "optim.epochs=2", "optim.updates_per_epoch=3", "dataset.batch_size=4",
            "dataset.segment_duration=0.064", "dataset.valid.num_samples=4", "generate.num_samples=1",
            "networks.generator.channels=16", "networks.generator.resblock_kernels=[3]", "networks.mpd.periods=[2,3]",
            "networks.mpd.channels=[4,8]", "networks.msd.channels=[4,8]"],
    "lm": ["solver=lm/debug", "optim.epochs=2", "optim.updates_per_epoch=3", "dataset.batch_size=16",
           "dataset.valid.num_samples=16", "lm.dim=32", "lm.layers=1", "generate.num_samples=2", "evaluate.num_samples=8"],
}


@pytest.fixture
def built_in_data(synth_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BATON_DATA_DIR", str(synth_cache))
    monkeypatch.setenv("BATON_XP_DIR", str(tmp_path / "xps"))
    return tmp_path / "xps"


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(BUILT_IN))
def test_each_built_in_task_resumes_exactly(task: str, built_in_data: Path) -> None:
    overrides = [*BUILT_IN[task], *COMMON]
    if task == "lm":  # the LM trains on the tokens of a codec XP: train one first
        import baton

        overrides.append(f"compression_model_checkpoint=//sig/{baton.run([*CODEC, *COMMON]).sig}")
    result = check_resume(overrides)
    assert result.exact, [(v.name, v.diagnosis, v.rows) for v in result.verdicts]
    assert [v.name.split()[0] for v in result.verdicts] == ["SIGTERM", "SIGKILL"]
    assert result.updates >= 6
    assert not (built_in_data / "check-resume").exists()
