"""What a solver's checkpoint holds, and how it is put back (layout: `baton.checkpoint`).

Everything that shapes the rest of training: registered state (models, steppers, plain values),
best states, EMA, and the loop's position: epoch, update count, history, the stages already
done this epoch, the train stage's progress and running metrics, the data position, and every
rank's RNG state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import distrib
from ..checkpoint import CheckpointManager, SolverState
from ..data.rng import derive_seed
from ..errors import CheckpointError
from ..logging import ResultLogger
from ..state import StateRegistry, capture_rng, restore_rng, seed_everything
from .cadence import Cadence
from .settings import LoopSettings

if TYPE_CHECKING:
    from .base import BaseSolver

logger = logging.getLogger("baton.solver")


def solver_state(solver: BaseSolver, *, collective: bool = True) -> SolverState:
    """The solver's checkpoint state. Collective (every rank's RNG and running metrics), unless
    `collective=False`: this rank's only (a save that other ranks do not join; resuming from it
    on several ranks reseeds, so it is not bit-exact)."""
    stream = solver._train_stream
    gather = distrib.all_gather_object if collective else (lambda value: [value])
    return {
        "registered": solver.stateful.state_dict(),
        "modules": solver.module_state_names(),
        "best": solver.best.state_dict(),
        "ema": solver.ema.state_dict() if solver.ema is not None else None,
        "loop": {
            "epoch": solver.epoch,
            "update": solver.update,
            "history": solver.history,
            "stopped_early": solver.stopped_early,
            "epoch_results": solver.epoch_results,
            "train_done": solver.train_done,
            "stage_metrics": gather(solver.stage_metrics.state_dict()) if solver.train_done else None,
            "train_stream": stream.state_dict() if stream is not None else None,
            "rng": gather(capture_rng()),  # every rank's stream
        },
    }


def load_solver_state(solver: BaseSolver, state: SolverState) -> None:
    solver.stateful.load_state_dict(state["registered"])
    solver.best.load_state_dict(state["best"])
    if solver.ema is not None and state["ema"] is not None:
        solver.ema.load_state_dict(state["ema"])
    loop = state["loop"]
    solver.epoch = loop["epoch"]
    solver.update = loop["update"]
    solver.history = loop["history"]
    solver.stopped_early = loop["stopped_early"]
    solver.epoch_results = loop["epoch_results"]
    solver.train_done = loop["train_done"]
    solver.restored_stage_metrics = loop["stage_metrics"]  # every rank's, see Averager
    if loop["train_stream"] is not None:
        solver._train_batches_stream().load_state_dict(loop["train_stream"])
    streams = loop["rng"]
    if len(streams) == distrib.world_size():
        restore_rng(streams[distrib.rank()])
    else:
        logger.warning(
            "checkpoint from %d rank(s), running on %d: training RNG reseeded, so this resume "
            "is not bit-exact", len(streams), distrib.world_size(),
        )
        seed_everything(derive_seed(solver.settings.seed, distrib.rank(), solver.update))


class Checkpointing:
    """The solver's checkpoint methods: its state, a save, and a restore. Mixed into BaseSolver,
    whose attributes it uses (declared below for readers and type checkers)."""

    folder: Path | None
    sig: str | None
    epoch: int
    train_done: int
    history: list[dict[str, dict[str, float]]]
    settings: LoopSettings
    cadence: Cadence
    result_logger: ResultLogger
    _checkpoints: CheckpointManager | None
    cfg: Any
    stateful: StateRegistry
    module_state_names: Callable[[], list[str]]  # BaseSolver's

    @property
    def checkpoints(self) -> CheckpointManager:
        """The XP folder's checkpoint files, opened on first use (a Brain writes through its
        Checkpointer instead, and may have no folder at all)."""
        if self._checkpoints is None:
            if self.folder is None:
                raise CheckpointError("this solver has no folder to write checkpoints to; give it one")
            s = self.settings
            self._checkpoints = CheckpointManager(
                self.folder, self.sig, keep_last=s.keep_last, keep_every=s.keep_every,
                async_save=s.async_save, trusted=s.trusted_checkpoints,
                solver=f"{type(self).__module__}.{type(self).__qualname__}",
            )
        return self._checkpoints

    def wait_for_saves(self) -> None:
        """Block until a background checkpoint write is on disk."""
        if self._checkpoints is not None:
            self._checkpoints.wait()

    def state_dict(self) -> SolverState:
        """Everything that shapes the rest of training; layout in `baton.checkpoint`. Collective."""
        return solver_state(self)  # type: ignore[arg-type]

    def load_state_dict(self, state: SolverState) -> None:
        load_solver_state(self, state)  # type: ignore[arg-type]

    def save_checkpoint(self, *, end_of_epoch: bool) -> None:
        """Collective when distributed (the stage metrics are reduced); rank 0 writes."""
        self.cadence.saved()
        if not self.settings.save:
            return
        state = self.state_dict()
        if distrib.is_rank_zero():
            self.checkpoints.save(dict(state), self.epoch - 1, end_of_epoch=end_of_epoch)

    def continue_from(self) -> None:
        """A new XP with `continue_from` set starts from that XP's model weights (its best state
        by default; `//sig/SIG/last` or `/ema` to choose), with fresh optimizers, schedules and
        loop state. Only when the XP has no checkpoint of its own: a rerun resumes itself."""
        from .references import load_strict, resolve

        text = self.cfg.get("continue_from")
        if text is None:
            return
        reference = resolve(str(text), self.cfg.xp.get("root"), "continue_from")
        if str(reference.cfg.solver) != str(self.cfg.solver):
            raise CheckpointError(
                f"continue_from={text} is XP {reference.sig} of solver '{reference.cfg.solver}'; this XP's "
                f"solver is '{self.cfg.solver}': continue from an XP of the same solver"
            )
        weights = reference.weights()
        for name in self.module_state_names():
            if name not in weights:
                raise CheckpointError(
                    f"continue_from={text}: XP {reference.sig} holds no weights for '{name}' "
                    f"(it holds {', '.join(sorted(weights))})"
                )
            target = self.stateful.get(name)
            load_strict(target, weights[name], f"XP {reference.sig} ('{name}')")
        logger.info("continuing from the %s weights of XP %s", reference.which, reference.sig)

    def restore(self) -> bool:
        """Load the XP's newest usable checkpoint. Returns False when starting afresh."""
        self.checkpoints.remove_stale_temporaries()
        data = self.checkpoints.load()
        if data is None:
            self.continue_from()
            return False
        try:
            self.load_state_dict(data["state"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
            # load_state_dict's first line is a header ("Error(s) in loading ...:"): name the first problem
            reason = " ".join(lines[:2]) if lines and lines[0].endswith(":") else (lines[0] if lines else type(exc).__name__)
            raise CheckpointError(
                f"checkpoint in {self.folder} does not fit this solver ({reason}); the code or "
                "config changed since it was written: restore them, or --clear to start afresh"
            ) from None
        self.result_logger.write_history(self.history)
        where = f"update {self.train_done} of epoch {self.epoch}" if self.train_done else f"epoch {self.epoch}"
        logger.info("resuming %s from %s", self.folder, where)
        return True
