"""A Brain under two gloo ranks started as torchrun starts them: one model, global metrics."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(out: Path, world: int, batch_size: int, strategy: str = "ddp") -> None:
    out.mkdir()
    start_ranks("tests.speechbrain.brain_ddp_worker", world, str(out), str(batch_size), strategy)


def start_ranks(module: str, world: int, *args: str, expect: int = 0) -> None:
    """`python -m MODULE ARGS` once per rank, with torchrun's environment; all must exit `expect`."""
    port = free_port()
    procs = []
    for rank in range(world):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        if world > 1:
            env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, "-m", module, *args],
                                      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    for proc in procs:
        output, _ = proc.communicate(timeout=240)
        assert proc.returncode == expect, output.decode()[-3000:]


@pytest.mark.timeout(300)
def test_two_ranks_train_one_model_equal_to_one_process_with_the_global_batch(tmp_path):
    launch(tmp_path / "ddp", world=2, batch_size=4)
    launch(tmp_path / "single", world=1, batch_size=8)
    rank0, rank1 = (torch.load(tmp_path / "ddp" / f"rank{r}.pt") for r in (0, 1))
    single = torch.load(tmp_path / "single" / "rank0.pt")
    assert rank0["world"] == 2 and single["world"] == 1
    for key, value in rank0["weights"].items():
        assert torch.equal(value, rank1["weights"][key]), key  # one model, bit for bit
        torch.testing.assert_close(value, single["weights"][key])  # the same training as one process
    # Every rank's hooks got the loss over all items of all ranks, equal to one process's.
    assert rank0["losses"] == rank1["losses"]
    for (stage, loss), (stage_single, loss_single) in zip(rank0["losses"], single["losses"], strict=True):
        assert stage == stage_single
        assert loss == pytest.approx(loss_single, rel=1e-5)
    # The valid loss is the mean over the 20 valid items (10 per rank, uneven batches of 3).
    from tests.speechbrain.brain_ddp_worker import data

    model = torch.nn.Linear(4, 2)
    model.load_state_dict(rank0["weights"])
    valid: TensorDataset = data(20, 2)
    expected = torch.nn.functional.mse_loss(model(valid.tensors[0]), valid.tensors[1]).item()
    assert rank0["losses"][-1] == ("valid", pytest.approx(expected, rel=1e-5))


@pytest.mark.slow  # three more launches; the engine's FSDP parity (example task) runs in the fast suite
@pytest.mark.timeout(300)
def test_two_fsdp_ranks_train_one_model_equal_to_ddp_and_to_one_process(tmp_path):
    """`distributed_strategy: fsdp`: the Brain's module is sharded, its optimizer built on the
    shards (on_fit_start), the same training as DDP's and as one process's with the global batch."""
    launch(tmp_path / "fsdp", world=2, batch_size=4, strategy="fsdp")
    launch(tmp_path / "ddp", world=2, batch_size=4)
    launch(tmp_path / "single", world=1, batch_size=8)
    rank0, rank1, ddp, single = (torch.load(tmp_path / name / f"rank{r}.pt")
                                 for name, r in (("fsdp", 0), ("fsdp", 1), ("ddp", 0), ("single", 0)))
    for key, value in rank0["weights"].items():
        assert torch.equal(value, rank1["weights"][key]), key
        torch.testing.assert_close(value, ddp["weights"][key])
        torch.testing.assert_close(value, single["weights"][key])
    for (stage, loss), (stage_ddp, loss_ddp) in zip(rank0["losses"], ddp["losses"], strict=True):
        assert stage == stage_ddp and loss == pytest.approx(loss_ddp, rel=1e-5)


@pytest.mark.slow  # three 2-rank launches; the engine's own 2-rank signal test runs in the fast suite
@pytest.mark.timeout(300)
def test_two_ranks_with_a_checkpointer_stop_together_on_sigterm_and_resume_bit_exact(tmp_path):
    """SIGTERM reaches rank 1 only (as SLURM may deliver it): both ranks stop at the same
    update with a checkpoint, and the resumed run equals one never stopped, on both ranks. The
    recipe's own save after evaluate, outside the stage hooks, is written by rank 0 alone."""
    start_ranks("tests.speechbrain.brain_ddp_resume_worker", 2, str(tmp_path / "straight"))
    start_ranks("tests.speechbrain.brain_ddp_resume_worker", 2, str(tmp_path / "stopped"), "11", expect=128 + 15)
    assert not (tmp_path / "stopped" / "rank0.pt").exists()
    start_ranks("tests.speechbrain.brain_ddp_resume_worker", 2, str(tmp_path / "stopped"))
    for rank in (0, 1):
        straight = torch.load(tmp_path / "straight" / f"rank{rank}.pt")
        resumed = torch.load(tmp_path / "stopped" / f"rank{rank}.pt")
        for key, value in straight["weights"].items():
            assert torch.equal(value, resumed["weights"][key]), (rank, key)
    assert (tmp_path / "straight" / "history.jsonl").read_text() == (tmp_path / "stopped" / "history.jsonl").read_text()
    assert (tmp_path / "stopped" / "save" / "CKPT+latest" / "brain.ckpt").is_file()
    # Valid and test sets are whole on every rank (15 items: no padding, no double counting).
    losses = torch.load(tmp_path / "straight" / "rank0.pt")["losses"]
    assert losses == torch.load(tmp_path / "straight" / "rank1.pt")["losses"]
