"""`baton run -d --nproc N`: N gloo processes on CPU, started by torch.distributed.run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.solver.test_ddp_parity import COMPRESSION as PARITY_COMPRESSION
from tests.solver.test_ddp_parity import assert_same_model
from tests.xp.conftest import REPO, baton_cli

# The codec parity run of tests/solver/test_ddp_parity.py, launched by `-d` instead of by hand.
COMPRESSION = [*PARITY_COMPRESSION, "logging.progress=false"]


def run_dumping(dump: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`baton ARGS` where every rank also saves its final weights into `dump`."""
    return subprocess.run(
        [sys.executable, "-m", "tests.solver.cli_rank_dump", str(dump), *args],
        env={**os.environ, **env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600,
    )


@pytest.mark.slow  # the parity itself is tests/solver/test_ddp_parity.py's; this runs it through -d
@pytest.mark.timeout(900)
def test_two_processes_train_one_model_equal_to_one_process(tmp_path: Path, synth_cache: Path) -> None:
    env = {"BATON_XP_DIR": str(tmp_path / "xps"), "BATON_DATA_DIR": str(synth_cache)}
    two = run_dumping(tmp_path / "two", "run", "-d", "--nproc", "2", *COMPRESSION, env=env)
    assert two.returncode == 0, (two.stdout + two.stderr)[-3000:]
    assert "baton: 2 processes for XP" in two.stdout
    one = run_dumping(tmp_path / "one", "run", *COMPRESSION, "label=one", env=env)
    assert one.returncode == 0, (one.stdout + one.stderr)[-3000:]
    rank0, rank1 = (torch.load(tmp_path / "two" / f"rank{r}.pt")["weights"]["model"] for r in (0, 1))
    single = torch.load(tmp_path / "one" / "rank0.pt")["weights"]["model"]
    assert_same_model(rank0, rank1, exact=True)  # one model
    assert_same_model(rank0, single, atol=5e-4)  # the same training as one process, within float error
    (folder,) = [p for p in (tmp_path / "xps" / "xps").iterdir() if (p / "worker_1.log").exists()]
    assert list((folder / "distrib_logs").glob("*/attempt_0/1/stdout.log"))  # rank 1's output is kept


def workers_of(parent: int) -> dict[int, int]:
    """{RANK: pid} of the processes whose parent is `parent` and that have a RANK."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        rank = next((v[5:] for v in environ if v.startswith(b"RANK=")), None)
        if ppid == parent and rank is not None:
            found[int(rank)] = int(entry.name)
    return found


@pytest.mark.timeout(300)
def test_killing_one_worker_stops_the_others_and_names_the_rank(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "baton", "run", "-d", "--nproc", "2", "solver=example", "optim.epochs=200",
         "logging.progress=false", "logging.tensorboard=false"],
        env={**os.environ, "PYTHONPATH": str(REPO), "BATON_XP_DIR": str(tmp_path)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("xps/*/history.jsonl")):  # training is under way on both ranks
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.2)
    workers = workers_of(proc.pid)
    assert set(workers) == {0, 1}
    os.kill(workers[1], signal.SIGKILL)
    killed_at = time.monotonic()
    out, err = proc.communicate(timeout=120)
    assert time.monotonic() - killed_at < 60
    assert proc.returncode == 128 + signal.SIGKILL
    assert f"rank 1 (pid {workers[1]}) was killed by SIGKILL; the other ranks were stopped" in err
    time.sleep(0.5)
    assert not Path(f"/proc/{workers[0]}").exists() or "Z" in Path(f"/proc/{workers[0]}/stat").read_text().split()[2]


def test_nproc_needs_d_and_d_needs_a_gpu_or_nproc(tmp_path: Path) -> None:
    env = {"BATON_XP_DIR": str(tmp_path)}
    result = baton_cli("run", "--nproc", "2", "solver=example", env=env)
    assert result.returncode == 2 and "--nproc goes with -d" in result.stderr
    result = baton_cli("run", "-d", "solver=example", "device=cpu", env=env)
    assert result.returncode == 2 and "give --nproc N to start N CPU processes (gloo)" in result.stderr


@pytest.mark.timeout(300)
def test_two_nodes_on_one_machine_through_torchrun(tmp_path: Path) -> None:
    """Multi-node without SLURM: one torchrun per node, one rendezvous (here both on localhost)."""
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO), "BATON_XP_DIR": str(tmp_path)}
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
             "--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", str(port),
             "-m", "baton", "run", "solver=example", "optim.epochs=1", "task.num_train=256",
             "logging.progress=false", "logging.tensorboard=false"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for node in (0, 1)
    ]
    outputs = [node.communicate(timeout=240)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[1][-2000:]
    (folder,) = tmp_path.glob("xps/*")
    assert (folder / "worker_1.log").exists() and len((folder / "history.jsonl").read_text().splitlines()) == 1
    assert "baton: XP" in outputs[0] and "done" in outputs[0]
    # The same world size on one node (`-d --nproc 2`) trains the same model, bit for bit.
    one_node = baton_cli("run", "-d", "--nproc", "2", "solver=example", "optim.epochs=1", "task.num_train=256",
                         "logging.progress=false", "logging.tensorboard=false", env={"BATON_XP_DIR": str(tmp_path / "one")})
    assert one_node.returncode == 0, one_node.stderr[-2000:]
    (other,) = (tmp_path / "one").glob("xps/*")
    two = torch.load(folder / "checkpoint.th", weights_only=False)["state"]["registered"]["model"]
    one = torch.load(other / "checkpoint.th", weights_only=False)["state"]["registered"]["model"]
    assert all(torch.equal(value, one[key]) for key, value in two.items())
    assert (folder / "history.jsonl").read_text() == (other / "history.jsonl").read_text()


@pytest.mark.slow
def test_an_xp_can_ask_for_processes_in_its_config_as_a_grid_does(tmp_path: Path) -> None:
    """`distributed.nproc=2` (what `launcher.bind_(distributed={"nproc": 2})` sets in a grid) is
    `-d --nproc 2`, and not part of the signature."""
    env = {"BATON_XP_DIR": str(tmp_path)}
    args = ["solver=example", "optim.epochs=1", "task.num_train=256", "logging.progress=false", "logging.tensorboard=false"]
    result = baton_cli("run", *args, "distributed.nproc=2", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "baton: 2 processes for XP" in result.stdout
    (folder,) = tmp_path.glob("xps/*")
    assert (folder / "worker_1.log").exists()
    assert baton_cli("run", "--dry_run", *args, env=env).stdout.split()[1] == folder.name
