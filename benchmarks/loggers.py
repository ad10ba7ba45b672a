"""Cost of the experiment trackers: a training stage with all four loggers (TensorBoard, MLflow,
W&B offline, CSV) against TensorBoard alone.

Two solvers train the same workload side by side, interleaved round by round in one process;
each round is one train stage (its metrics logged at the stage's end, as in real runs) at a
new epoch, so every tracker really writes. Printed: median time per stage on each side and
their ratio (all / TensorBoard only), target <= 1.02, for a stage of `--updates` tiny-MLP
updates and one of `--conv-updates` conv-net updates (the workloads of overhead.py).

    python benchmarks/loggers.py [--rounds 7] [--updates 300] [--conv-updates 20]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import DEFAULTS, BenchSolver, conv_net, tiny_mlp  # noqa: E402

from baton.solver import Stage  # noqa: E402


def make_solver(loggers: list[str], workload, folder: Path, updates: int, sig: str) -> BenchSolver:
    cfg = OmegaConf.merge(OmegaConf.load(DEFAULTS), {
        "solver": "bench", "optim": {"updates_per_epoch": updates},
        "logging": {"loggers": loggers, "progress": False},
        "xp": {"sig": sig, "root": str(folder)},
    })
    return BenchSolver(cfg, workload, str(folder / sig))


def stage_time(solver: BenchSolver, epoch: int) -> float:
    solver.epoch = epoch  # a new step for the trackers each round
    start = time.perf_counter()
    solver.run_stage(Stage.TRAIN, solver.train)
    return time.perf_counter() - start


def compare(name: str, build, rounds: int, updates: int) -> float:
    with tempfile.TemporaryDirectory() as scratch:
        torch.manual_seed(0)
        alone = make_solver(["tensorboard"], build(), Path(scratch), updates, "tbonly00")
        torch.manual_seed(0)
        every = make_solver(["tensorboard", "mlflow", "wandb", "csv"], build(), Path(scratch), updates, "allfour0")
        stage_time(alone, 1)  # warm-up: trackers start (W&B's service, MLflow's store) here
        stage_time(every, 1)
        alone_times, every_times = [], []
        for epoch in range(2, rounds + 2):
            alone_times.append(stage_time(alone, epoch))
            every_times.append(stage_time(every, epoch))
        alone.close()
        every.close()
    a, b = statistics.median(alone_times), statistics.median(every_times)
    print(f"{name:9s} tensorboard only {a * 1e3:8.1f} ms/stage   all four {b * 1e3:8.1f} ms/stage   ratio {b / a:.3f}")
    return b / a


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--conv-updates", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_SILENT", "true")
    logging.getLogger("baton").setLevel(logging.WARNING)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} interleaved rounds")
    mlp = compare("tiny MLP", tiny_mlp, args.rounds, args.updates)
    conv = compare("conv net", conv_net, args.rounds, args.conv_updates)
    print(f"target: all four loggers within 2% of TensorBoard alone: tiny MLP {'ok' if mlp <= 1.02 else 'MISSED'}, "
          f"conv net {'ok' if conv <= 1.02 else 'MISSED'}")


if __name__ == "__main__":
    main()
