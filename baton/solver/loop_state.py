"""Where training stands, as one unit: what the loop saves in a checkpoint and puts back.

`LoopState` is the loop's position (epoch, update count, history, the stages already done this
epoch, the train stage's progress). A checkpoint's `loop` entry holds it (under format 2's
keys, so older files load unchanged), together with what is gathered at save time: the train
stage's running metrics, the data position, and every rank's RNG state. `solver_state` is the
whole checkpoint state of a solver: its registered state, best states, EMA, and that entry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import distrib
from ..checkpoint import SavedLoop, SavedSolver
from ..data.rng import derive_seed
from ..stateful import capture_rng, restore_rng, seed_everything

if TYPE_CHECKING:
    from .core import SolverCore

logger = logging.getLogger("baton.solver")

History = list[dict[str, dict[str, float]]]


@dataclass
class LoopState:
    """The loop's position; everything else that shapes the rest of training is registered state.

    Attributes:
        epoch: the epoch to run next (1-based).
        update_count: optimizer updates done since the start of training.
        history: one entry per finished epoch: stage name -> its metrics.
        stopped_early: `should_stop()` ended training.
        epoch_results: the running epoch's stages already done (a mid-epoch resume skips them).
        train_done: updates of the running epoch's train stage already done.
    """

    epoch: int = 1
    update_count: int = 0
    history: History = field(default_factory=list)
    stopped_early: bool = False
    epoch_results: dict[str, dict[str, float]] = field(default_factory=dict)
    train_done: int = 0

    def unused_result_name(self, base: str) -> str:
        """`base`, or `base_2`, `base_3`, ...: the first name the last epoch's results do not
        hold yet (a second test set must not overwrite the first)."""
        taken = self.history[-1] if self.history else {}
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        return name

    def end_epoch(self) -> None:
        """The running epoch's results become a history entry, and the next epoch starts."""
        self.history.append({k: v for k, v in self.epoch_results.items() if v})
        self.epoch_results = {}
        self.train_done = 0
        self.epoch += 1


def solver_state(solver: SolverCore, *, collective: bool = True) -> SavedSolver:
    """The solver's checkpoint state. Collective (every rank's RNG and running metrics), unless
    `collective=False`: this rank's only (a save that other ranks do not join; resuming from it
    on several ranks reseeds, so it is not bit-exact)."""
    loop, stream = solver.loop_state, solver.train_stream
    gather = distrib.all_gather_object if collective else (lambda value: [value])
    saved: SavedLoop = {
        "epoch": loop.epoch,
        "update": loop.update_count,
        "history": loop.history,
        "stopped_early": loop.stopped_early,
        "epoch_results": loop.epoch_results,
        "train_done": loop.train_done,
        "stage_metrics": gather(solver.stage_metrics.state_dict()) if loop.train_done else None,
        "train_stream": stream.state_dict() if stream is not None else None,
        "rng": gather(capture_rng()),  # every rank's stream
    }
    return {
        "registered": solver.stateful.state_dict(),
        "modules": solver.module_state_names(),
        "best": solver.best.state_dict(),
        "ema": solver.ema.state_dict() if solver.ema is not None else None,
        "loop": saved,
    }


def load_solver_state(solver: SolverCore, state: SavedSolver) -> None:
    solver.stateful.load_state_dict(state["registered"])
    solver.best.load_state_dict(state["best"])
    if solver.ema is not None and state["ema"] is not None:
        solver.ema.load_state_dict(state["ema"])
    saved = state["loop"]
    solver.loop_state = LoopState(
        epoch=saved["epoch"], update_count=saved["update"], history=saved["history"],
        stopped_early=saved["stopped_early"], epoch_results=saved["epoch_results"],
        train_done=saved["train_done"],
    )
    solver.restored_stage_metrics = saved["stage_metrics"]  # every rank's, see Averager
    if saved["train_stream"] is not None:
        solver.training_stream().load_state_dict(saved["train_stream"])
    streams = saved["rng"]
    if len(streams) == distrib.world_size():
        restore_rng(streams[distrib.rank()])
    else:
        logger.warning(
            "checkpoint from %d rank(s), running on %d: training RNG reseeded, so this resume "
            "is not bit-exact", len(streams), distrib.world_size(),
        )
        seed_everything(derive_seed(solver.settings.seed, distrib.rank(), saved["update"]))
