"""Per-update overhead of baton's loops against the same loops written by hand in PyTorch.

Both sides train the same model on the same in-memory data through the same DataLoader, for
the same number of updates, interleaved round by round in one process so that machine noise
hits both alike. baton runs with its default logging, progress and non-finite loss guard on.
Printed: median time per update of each side and their ratio (baton / hand loop):

  tiny MLP   StandardSolver, Linear(64, 64), batch 32: overhead-dominated (target <= 1.08)
  conv net   StandardSolver, 1-D convs on [16, 1, 16000] waveforms: compute-bound (target <= 1.01)
  Brain      the SpeechBrain front end on the tiny MLP (target <= 1.05)
  2-rank DDP the engine's DDP (2 gloo processes, each on its shard) against a hand-written DDP
             loop on the same shards, tiny MLP (target <= 1.05)

Also printed: the time `import baton` adds to `import torch` (target < 0.3 s).

    python benchmarks/overhead.py [--rounds 7] [--updates 300] [--device cuda] [--no-ddp]

On a GPU (`--device cuda`) the model and data live on the device and each timed round ends
with a synchronize, so both sides pay for the kernels they queued: the ratio then shows what
the solver's bookkeeping (metrics, progress) costs against an asynchronous hand loop.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import baton as sb
from baton.data.sampler import ResumableSampler
from baton.solver import Stage, StandardSolver

DEFAULTS = Path(__file__).resolve().parents[1] / "baton" / "conf" / "solver" / "default.yaml"


def on_device(workload: tuple[nn.Module, TensorDataset, int], device: str) -> tuple[nn.Module, TensorDataset, int]:
    model, dataset, batch_size = workload
    return model.to(device), TensorDataset(*(t.to(device) for t in dataset.tensors)), batch_size


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def tiny_mlp() -> tuple[nn.Module, TensorDataset, int]:
    return nn.Linear(64, 64), TensorDataset(torch.randn(4096, 64), torch.randn(4096, 64)), 32


def conv_net() -> tuple[nn.Module, TensorDataset, int]:
    model = nn.Sequential(
        nn.Conv1d(1, 32, 15, stride=4, padding=7), nn.ELU(),
        nn.Conv1d(32, 32, 15, stride=4, padding=7), nn.ELU(),
        nn.ConvTranspose1d(32, 32, 8, stride=4, padding=2), nn.ELU(),
        nn.ConvTranspose1d(32, 1, 8, stride=4, padding=2),
    )
    waves = torch.randn(64, 1, 16000)
    return model, TensorDataset(waves, waves), 16


def make_loader(dataset: TensorDataset, batch_size: int) -> DataLoader:
    sampler = ResumableSampler(dataset, seed=0)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True,
                      generator=torch.Generator())


class BenchSolver(StandardSolver):
    """The same training step as the hand loop, written as a StandardSolver."""

    def __init__(self, cfg: Any, workload: Any, folder: str) -> None:
        self.workload = workload
        super().__init__(cfg, folder=folder)

    def build_model(self) -> None:
        self.model, dataset, batch_size = self.workload
        self.stepper = self.make_stepper(torch.optim.Adam(self.model.parameters(), lr=1e-4), None, self.model)
        self.register_stateful("model", "stepper")
        self.dataloaders["train"] = make_loader(dataset, batch_size)

    def build_dataloaders(self) -> None:
        pass

    def run_step(self, idx: int, batch: Any, metrics: dict[str, Any]) -> dict[str, Any]:
        x, y = batch
        with self.autocast():
            loss = F.mse_loss(self.model(x), y)
        if self.is_training:
            metrics.update(self.stepper.step(loss))
        metrics["loss"] = loss
        return metrics


def hand_loop(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, updates: int,
              device: str) -> float:
    synchronize(device)
    start = time.perf_counter()
    done = 0
    while done < updates:
        for x, y in loader:
            loss = F.mse_loss(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
            if done == updates:
                break
    synchronize(device)
    return (time.perf_counter() - start) / updates


def solver_round(solver: BenchSolver, updates: int, device: str) -> float:
    synchronize(device)
    start = time.perf_counter()
    solver.run_stage(Stage.TRAIN, solver.train)
    synchronize(device)
    return (time.perf_counter() - start) / updates


def compare(name: str, build: Any, rounds: int, updates: int, device: str) -> float:
    torch.manual_seed(0)
    hand_model, dataset, batch_size = on_device(build(), device)
    hand_loader = make_loader(dataset, batch_size)
    hand_opt = torch.optim.Adam(hand_model.parameters(), lr=1e-4)
    cfg = OmegaConf.load(DEFAULTS)
    cfg = OmegaConf.merge(cfg, {"solver": "bench", "device": device,
                                 "optim": {"updates_per_epoch": updates}})
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        solver = BenchSolver(cfg, on_device(build(), device), folder)
        hand_loop(hand_model, hand_loader, hand_opt, 20, device)  # warm-up both sides
        solver_round(solver, updates, device)
        hand_times, solver_times = [], []
        for _ in range(rounds):
            hand_times.append(hand_loop(hand_model, hand_loader, hand_opt, updates, device))
            solver_times.append(solver_round(solver, updates, device))
        solver.close()
    hand, ours = statistics.median(hand_times), statistics.median(solver_times)
    ratio = ours / hand
    print(f"{name:9s} hand {hand * 1e6:9.1f} us/update   solver {ours * 1e6:9.1f} us/update   ratio {ratio:.3f}")
    return ratio


class BenchBrain(sb.Brain):
    """The same training step as the hand loop, written as a SpeechBrain Brain; a train stage
    times itself through the hooks (the loader and optimizer set-up of `fit` stay outside)."""

    def compute_forward(self, batch: Any, stage: Any) -> Any:
        return self.modules.model(batch[0])

    def compute_objectives(self, predictions: Any, batch: Any, stage: Any) -> torch.Tensor:
        return F.mse_loss(predictions, batch[1])

    def on_stage_start(self, stage: Any, epoch: Any = None) -> None:
        synchronize(str(self.device))
        self.started = time.perf_counter()

    def on_stage_end(self, stage: Any, stage_loss: Any, epoch: Any = None) -> None:
        synchronize(str(self.device))
        self.seconds = time.perf_counter() - self.started


def compare_brain(rounds: int, updates: int, device: str) -> float:
    torch.manual_seed(0)
    hand_model, _, batch_size = on_device(tiny_mlp(), device)
    # A Brain's epoch is one pass: the data holds `updates` batches.
    dataset = TensorDataset(*(t.to(device) for t in (torch.randn(updates * batch_size, 64), torch.randn(updates * batch_size, 64))))
    hand_loader = make_loader(dataset, batch_size)
    hand_opt = torch.optim.Adam(hand_model.parameters(), lr=1e-4)
    torch.manual_seed(0)
    model, _, _ = on_device(tiny_mlp(), device)
    brain = BenchBrain({"model": model}, lambda params: torch.optim.Adam(params, lr=1e-4),
                       run_opts={"device": device, "max_grad_norm": 0.0})
    kwargs = {"batch_size": batch_size, "drop_last": True}
    hand_loop(hand_model, hand_loader, hand_opt, 20, device)  # warm-up both sides
    brain.fit(range(1), dataset, train_loader_kwargs=kwargs)
    hand_times, brain_times = [], []
    for _ in range(rounds):
        hand_times.append(hand_loop(hand_model, hand_loader, hand_opt, updates, device))
        brain.fit(range(1), dataset, train_loader_kwargs=kwargs)
        brain_times.append(brain.seconds / updates)
    brain.close()
    hand, ours = statistics.median(hand_times), statistics.median(brain_times)
    print(f"{'Brain':10s} hand {hand * 1e6:9.1f} us/update   Brain  {ours * 1e6:9.1f} us/update   ratio {ours / hand:.3f}")
    return ours / hand


def ddp_worker(rank: int, world: int, port: int, rounds: int, updates: int, out: str) -> None:
    """One rank: the hand-written DDP loop and the engine, interleaved, on this rank's shard."""
    import os

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    import logging

    logging.getLogger("baton").setLevel(logging.WARNING)
    torch.manual_seed(0)
    model, dataset, batch_size = tiny_mlp()
    hand_model = DistributedDataParallel(model)
    hand_loader = make_loader(dataset, batch_size)  # ResumableSampler: this rank's shard
    hand_opt = torch.optim.Adam(hand_model.parameters(), lr=1e-4)
    cfg = OmegaConf.merge(OmegaConf.load(DEFAULTS), {"solver": "bench", "device": "cpu", "logging": {"progress": False},
                                                       "optim": {"updates_per_epoch": updates}})
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        solver = BenchSolver(cfg, tiny_mlp(), folder)
        solver.prepare()  # wraps the model in DDP
        hand_loop(hand_model, hand_loader, hand_opt, 20, "cpu")
        solver_round(solver, updates, "cpu")
        hand_times, solver_times = [], []
        for _ in range(rounds):
            dist.barrier()
            hand_times.append(hand_loop(hand_model, hand_loader, hand_opt, updates, "cpu"))
            dist.barrier()
            solver_times.append(solver_round(solver, updates, "cpu"))
        solver.close()
    if rank == 0:
        Path(out).write_text(f"{statistics.median(hand_times)} {statistics.median(solver_times)}")
    dist.barrier()
    del solver, hand_model  # DDP's reducers hold the process group: gone before it is destroyed
    dist.destroy_process_group()


def compare_ddp(rounds: int, updates: int) -> float:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        out = f"{folder}/times"
        mp.spawn(ddp_worker, args=(2, port, rounds, updates, out), nprocs=2, join=True)
        hand, ours = (float(x) for x in Path(out).read_text().split())
    print(f"{'2-rank DDP':10s} hand {hand * 1e6:9.1f} us/update   solver {ours * 1e6:9.1f} us/update   ratio {ours / hand:.3f}")
    return ours / hand


def import_cost(repeats: int = 5) -> float:
    """Seconds `import baton` (with the solver and task registry) adds after `import torch`.

    Measured inside fresh interpreters (best of `repeats`): torch first, then baton, so the
    difference is baton's own cost, not process start-up noise.
    """
    code = (
        "import time; import torch; t = time.perf_counter(); "
        "import baton, baton.solver, baton.tasks; print(time.perf_counter() - t)"
    )
    runs = [float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                 text=True).stdout) for _ in range(repeats)]
    return min(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--conv-updates", type=int, default=10)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: model and data on the GPU")
    parser.add_argument("--no-ddp", action="store_true", help="skip the 2-rank DDP comparison")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    import logging

    logging.getLogger("baton").setLevel(logging.WARNING)  # keep the table readable
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} interleaved rounds, "
          f"device {args.device}")
    mlp = compare("tiny MLP", tiny_mlp, args.rounds, args.updates, args.device)
    conv = compare("conv net", conv_net, args.rounds, args.conv_updates, args.device)
    brain = compare_brain(args.rounds, args.updates, args.device)
    ddp = None if args.no_ddp else compare_ddp(args.rounds, args.updates)
    cost = import_cost()
    print(f"import baton (+ solver, tasks) adds {cost:.3f} s to import torch")
    verdict = lambda ratio, target: f"<= {target} ({'ok' if ratio <= target else 'MISSED'})"  # noqa: E731
    print(f"targets: tiny MLP {verdict(mlp, 1.08)}, conv net {verdict(conv, 1.01)}, Brain {verdict(brain, 1.05)}, "
          + (f"2-rank DDP {verdict(ddp, 1.05)}, " if ddp is not None else "")
          + f"import < 0.3 s ({'ok' if cost < 0.3 else 'MISSED'})")


if __name__ == "__main__":
    main()
