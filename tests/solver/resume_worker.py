"""A training process for the kill-and-resume tests: `python -m tests.solver.resume_worker SPEC`.

SPEC is JSON: {"folder", "overrides", and optionally one kill point}. The process kills itself
with SIGKILL at that point — a real, unclean death, at a reproducible place:
  kill_at_update: N       after N optimizer updates in total (inside an epoch)
  kill_in_serialize: K    while pickling the K-th checkpoint of this process (tmp file open)
  kill_before_rename: K   after the K-th checkpoint's tmp file is written and fsynced, before
                          it replaces checkpoint.th
The training itself is the example solver plus per-item data noise drawn from
(seed, epoch, index), so data randomness and DataLoader workers are exercised too.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

import torch
from torch.utils.data import Dataset

import baton.atomic
from baton.data.rng import sample_generator
from baton.tasks.example import ExampleSolver
from tests.helpers import example_config


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class NoisyInputs(Dataset):
    """Adds fresh input noise per (epoch, index), as augmentation would."""

    def __init__(self, base: Any, seed: int) -> None:
        self.base, self.seed, self.epoch = base, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> Any:
        x, y = self.base[index]
        noise = torch.randn(x.shape, generator=sample_generator(self.seed, self.epoch, index))
        return x + 0.05 * noise, y


class SerializationBomb:
    """Registered state whose pickling kills the process during the chosen checkpoint write."""

    def __init__(self, save_index: int | None) -> None:
        self.save_index, self.saves = save_index, 0

    def state_dict(self) -> dict[str, Any]:
        self.saves += 1
        return {"bomb": _Bomb(self.saves == self.save_index)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class _Bomb:
    def __init__(self, armed: bool) -> None:
        self.armed = armed

    def __reduce__(self) -> Any:
        if self.armed:
            die()
        # Stored as an empty set: loadable without this module, and by weights_only=True
        # (which allows set but no call of bool).
        return (set, ())


class KilledSolver(ExampleSolver):
    def __init__(self, cfg: Any, spec: dict[str, Any]) -> None:
        self.spec = spec
        super().__init__(cfg)

    def build_model(self) -> None:
        super().build_model()
        self.bomb = SerializationBomb(self.spec.get("kill_in_serialize"))
        self.register_stateful("bomb")

    def build_dataloaders(self) -> None:
        super().build_dataloaders()
        train = self.dataloaders["train"]
        if not isinstance(train.dataset, NoisyInputs):
            loader = torch.utils.data.DataLoader(
                NoisyInputs(train.dataset, self.cfg.seed),
                batch_size=train.batch_size,
                sampler=train.sampler,
                drop_last=train.drop_last,
                num_workers=train.num_workers,
                worker_init_fn=train.worker_init_fn,
                generator=train.generator,
            )
            self.dataloaders["train"] = loader

    def run_step(self, idx: int, batch: Any, metrics: dict[str, Any]) -> dict[str, Any]:
        if self.is_training and self.update_count == self.spec.get("kill_at_update"):
            die()
        if self.is_training and self.spec.get("seconds_per_batch"):
            time.sleep(self.spec["seconds_per_batch"])  # a longer run, the same numbers
        return super().run_step(idx, batch, metrics)


def main() -> None:
    spec = json.loads(sys.argv[1])
    rename_at = spec.get("kill_before_rename")
    if rename_at is not None:
        real_replace, calls = os.replace, {"n": 0}

        def replace(src: Any, dst: Any) -> None:
            if str(dst).endswith("checkpoint.th"):
                calls["n"] += 1
                if calls["n"] == rename_at:
                    die()
            real_replace(src, dst)

        baton.atomic.os.replace = replace  # type: ignore[attr-defined]
    cfg = example_config(spec["folder"], *spec["overrides"])
    KilledSolver(cfg, spec).run()


if __name__ == "__main__":
    main()
