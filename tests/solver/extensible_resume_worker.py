"""A GAN training process for the extensible solver's kill-and-resume test:
`python -m tests.solver.extensible_resume_worker SPEC`.

SPEC is JSON: {"overrides": [...], "kill_at_update": N or null}. The process kills itself with
SIGKILL between the generator's and the discriminator's step of update N: a real, unclean death
in the middle of an update. BATON_DATA_DIR and BATON_XP_DIR come from the environment.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import sys
from typing import Any

from baton.solver.extensible import ExtensibleSolver
from tests.solver.extensible_configs import TINY_STEPS, tiny_gan


def resume_steps() -> dict[str, Any]:
    """TINY_STEPS with random augmentation, so the RNG state must resume exactly too."""
    steps = copy.deepcopy(TINY_STEPS)
    generator = steps["generator"]
    generator["injectors"] = {
        "augment": {"type": "augment", "in": "wav", "out": "wav_aug", "gain_db": [-6, 0], "polarity": 0.5, "shift": 8},
        **generator["injectors"],
    }
    generator["injectors"]["mel"]["in"] = "wav_aug"
    generator["losses"]["l1"]["real"] = "wav_aug"
    generator["lr_scheduler"] = {"lr_scheduler": "cosine", "warmup": 2}
    return steps


class KilledSolver(ExtensibleSolver):
    def __init__(self, cfg: Any, kill_at: int | None) -> None:
        self.kill_at = kill_at
        super().__init__(cfg)

    def train_step(self, step: Any, update: Any, states: list[Any]) -> dict[str, Any]:
        if step.name == "discriminator" and self.update_count == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().train_step(step, update, states)


def main() -> None:
    spec = json.loads(sys.argv[1])
    cfg = tiny_gan(*spec["overrides"], steps=resume_steps())
    with KilledSolver(cfg, spec.get("kill_at_update")) as solver:
        solver.run()
    print(cfg.xp.folder)


if __name__ == "__main__":
    main()
