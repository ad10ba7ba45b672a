"""`baton run --slurm` on a real one-node SLURM cluster (scripts/local_slurm.sh; `make test-slurm`
starts it). Skipped when no cluster answers `sinfo`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.xp.conftest import QUICK, baton_cli


def cluster_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    return out.returncode == 0 and any(s in out.stdout for s in ("idle", "mixed", "alloc"))


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(not cluster_up(), reason="no SLURM cluster: start one with scripts/local_slurm.sh start"),
]
LONG = ["solver=example", "optim.epochs=20", "checkpoint.every_updates=5", "logging.progress=false", "logging.tensorboard=false"]


def job_of(folder: Path) -> str:
    return json.loads((folder / ".slurm.json").read_text())["job_id"]


def job_field(job: str, name: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, timeout=30).stdout
    return next(part.split("=", 1)[1] for part in out.split() if part.startswith(f"{name}="))


def wait_until(condition, timeout: float = 180, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def submit(root: Path, *args: str) -> Path:
    result = baton_cli("run", "--slurm", *args, env={"BATON_XP_DIR": str(root)})
    assert result.returncode == 0, result.stderr
    assert "submitted as SLURM job" in result.stdout
    (folder,) = [p for p in root.glob("xps/*") if (p / ".slurm.json").exists() and p.name in result.stdout]
    return folder


def ended(folder: Path) -> bool:
    return job_field(job_of(folder), "JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")


def test_a_submitted_xp_runs_to_done_and_info_shows_its_job(tmp_path: Path) -> None:
    folder = submit(tmp_path, *QUICK, "optim.epochs=2")
    wait_until(lambda: ended(folder), what="the job")
    assert json.loads((folder / ".exit.json").read_text())["status"] == "done"
    assert len((folder / "history.jsonl").read_text().splitlines()) == 2
    info = baton_cli("info", "-f", folder.name, "-t", env={"BATON_XP_DIR": str(tmp_path)})
    assert f"job {job_of(folder)}" in info.stdout and f"submitit/{job_of(folder)}_0_log.out" in info.stdout


def test_a_preempted_job_is_requeued_and_resumes_exactly(tmp_path: Path) -> None:
    """SIGUSR1 as SLURM sends it before a time limit or on preemption: checkpoint, requeue,
    resume. The local cluster delays a requeued job's start (BeginTime); the test releases it."""
    folder = submit(tmp_path / "slurm", *LONG)
    job = job_of(folder)
    wait_until(lambda: (folder / "history.jsonl").exists(), what="the first epoch")
    subprocess.run(["scancel", "--signal=USR1", job], check=True)
    wait_until(lambda: job_field(job, "Restarts") == "1", what="the requeue")
    # Released only once the old instance has exited and the job waits again: released while it
    # still completes, SLURM marks the job FAILED instead of starting it again (seen 1 in 2).
    wait_until(lambda: job_field(job, "JobState") == "PENDING", what="the requeued job to wait")
    # Started again within the second its old instance's credential was revoked, slurmd kills
    # the job ("Killing non-startable batch job: Job credential revoked": it compares the two at
    # one-second resolution; seen 3 in 20). The revocation came before the requeue counted, so
    # 1.5 s after that count the clock is past its second. A real cluster's delay is far longer.
    time.sleep(1.5)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
    wait_until(lambda: ended(folder), what="the requeued job")
    assert json.loads((folder / ".exit.json").read_text())["status"] == "done"
    log = (folder / "submitit" / f"{job}_0_log.out").read_text()
    assert "stopped by SIGUSR1" in log and "requeuing job" in log
    assert "resuming" in (folder / "solver.log").read_text()

    local = baton_cli("run", *LONG, env={"BATON_XP_DIR": str(tmp_path / "local")})  # never stopped
    assert local.returncode == 0, local.stderr
    (other,) = (tmp_path / "local").glob("xps/*")
    resumed = torch.load(folder / "checkpoint.th", weights_only=False)["state"]["registered"]["model"]
    straight = torch.load(other / "checkpoint.th", weights_only=False)["state"]["registered"]["model"]
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key
    assert (folder / "history.jsonl").read_text() == (other / "history.jsonl").read_text()


def test_a_job_that_fails_is_not_requeued(tmp_path: Path) -> None:
    folder = submit(tmp_path, *QUICK, "device=cuda")  # no GPU here: a config error in the job
    wait_until(lambda: ended(folder), what="the job")
    job = job_of(folder)
    assert job_field(job, "Restarts") == "0"
    assert json.loads((folder / ".exit.json").read_text())["status"] == "failed"
    assert "CUDA is not available" in (folder / "submitit" / f"{job}_0_log.err").read_text()


def test_clear_cancels_the_live_job_first(tmp_path: Path) -> None:
    folder = submit(tmp_path, *LONG)
    first = job_of(folder)
    again = baton_cli("run", "--slurm", *LONG, env={"BATON_XP_DIR": str(tmp_path)})
    assert again.returncode == 2 and f"already has SLURM job {first}" in again.stderr
    cleared = submit(tmp_path, *LONG, "--clear")
    assert cleared == folder and job_of(folder) != first
    assert job_field(first, "JobState") == "CANCELLED"
    subprocess.run(["scancel", job_of(folder)], check=True)


@pytest.fixture(autouse=True)
def no_gpu_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


GRID = '''
from baton.xp.explore import explorer


@explorer(metrics=["valid.loss"])
def explore(launcher):
    launcher.bind_(solver="example", optim={"epochs": 1}, task={"num_train": 128})
    launcher.slurm_(cpus_per_task=1, time=10)
    for lr in [1e-3, 2e-3, 3e-3, 4e-3]:
        launcher(optim={"lr": lr})
'''


def grid_env(tmp_path: Path, grid: str) -> dict[str, str]:
    """A grid package `mygrids` holding `sweep.py`, and an XP root of its own."""
    package = tmp_path / "mygrids"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "sweep.py").write_text(grid)
    return {"BATON_XP_DIR": str(tmp_path / "xps"), "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def test_a_grid_of_three_goes_as_three_jobs_and_its_table_ends_done(tmp_path: Path) -> None:
    """Below the array threshold (4), each XP is its own job; the table shows them live."""
    env = grid_env(tmp_path, GRID.replace("[1e-3, 2e-3, 3e-3, 4e-3]", "[1e-3, 2e-3, 3e-3]"))
    result = baton_cli("grid", "sweep", "--package", "mygrids", "--slurm", env=env)
    assert result.returncode == 0, result.stderr
    assert "submitted 3 XP(s) to SLURM" in result.stdout
    folders = sorted(p.parent for p in (tmp_path / "xps" / "xps").glob("*/.slurm.json"))
    jobs = [job_of(folder) for folder in folders]
    assert len(set(jobs)) == 3 and not any("_" in job for job in jobs)  # three jobs, no array
    live = baton_cli("grid", "sweep", "--package", "mygrids", "--slurm", "--format", "csv", env=env).stdout
    rows = live[live.index("#,name"):].strip().splitlines()[1:]
    assert len(rows) == 3 and all(row.rsplit(",", 1)[1].startswith(tuple(jobs)) for row in rows), live
    wait_until(lambda: all(ended(folder) for folder in folders), what="three jobs")
    table = baton_cli("grid", "sweep", "--package", "mygrids", "--slurm", "--format", "csv", env=env).stdout
    assert table.count(",done,") == 3, table
    header, *rows = table[table.index("#,name"):].strip().splitlines()
    losses = [row.split(",")[header.split(",").index("valid.loss")] for row in rows]
    assert all(float(loss) > 0 for loss in losses)  # metrics filled in from each XP's history


def test_a_grid_goes_to_slurm_as_one_job_array(tmp_path: Path) -> None:
    env = grid_env(tmp_path, GRID)
    result = baton_cli("grid", "sweep", "--package", "mygrids", "--slurm", env=env)
    assert result.returncode == 0, result.stderr
    assert "submitted 4 XP(s) to SLURM" in result.stdout
    folders = sorted(p.parent for p in (tmp_path / "xps" / "xps").glob("*/.slurm.json"))
    assert len(folders) == 4
    jobs = [job_of(folder) for folder in folders]
    assert len({job.split("_")[0] for job in jobs}) == 1 and all("_" in job for job in jobs)  # one array
    wait_until(lambda: all(ended(folder) for folder in folders), what="the array")
    table = baton_cli("grid", "sweep", "--package", "mygrids", "--slurm", "--format", "csv", env=env)
    assert "nothing to submit" in table.stdout
    assert table.stdout.count(",done,") == 4 and "slurm" in table.stdout.splitlines()[1]


CHAIN = '''
from baton.xp.explore import explorer


@explorer(metrics=["valid.loss"])
def explore(launcher):
    launcher.bind_(solver="example", optim={"epochs": 1}, task={"num_train": 128})
    launcher.slurm_(cpus_per_task=1, time=10)
    first, *others = [launcher(optim={"lr": lr}) for lr in [1e-3, 2e-3, 3e-3, 4e-3]]  # a job array
    launcher(optim={"lr": 5e-3}, continue_from=f"//sig/{first.sig}")
'''


def test_an_xp_that_continues_from_another_waits_for_its_job(tmp_path: Path) -> None:
    """All go at once, four as a job array; the fifth job depends on the first array task
    (afterok), so it starts from that XP's finished weights instead of stopping with "finish
    it first"."""
    env = grid_env(tmp_path, CHAIN)
    result = baton_cli("grid", "sweep", "--package", "mygrids", "--slurm", env=env)
    assert result.returncode == 0, result.stderr
    assert "submitted 5 XP(s) to SLURM" in result.stdout
    folders = [p.parent for p in (tmp_path / "xps" / "xps").glob("*/.slurm.json")]
    (second,) = [f for f in folders if "continue_from" in (f / ".argv.json").read_text()]
    (first,) = [f for f in folders if "lr=0.001" in (f / ".argv.json").read_text()]
    assert "_" in job_of(first) and "_" not in job_of(second)
    assert job_field(job_of(second), "Dependency") in (f"afterok:{job_of(first)}(unfulfilled)", "(null)")
    wait_until(lambda: all(ended(folder) for folder in folders), what="the chain")
    assert job_field(job_of(first), "JobState") == job_field(job_of(second), "JobState") == "COMPLETED"
    table = baton_cli("grid", "sweep", "--package", "mygrids", "--slurm", "--format", "csv", env=env).stdout
    assert table.count(",done,") == 5, table
