"""The solver's checkpoints: when one is written, and how a run is put back from one.

A component the solver holds as `self.checkpoints`. The files and their format are
`baton.checkpoint`'s; what a checkpoint holds is `loop_state.solver_state`. A Brain writes
through its SpeechBrain Checkpointer instead, and may have no folder at all.
"""

from __future__ import annotations

import logging
import shutil
from typing import TYPE_CHECKING, Any

import torch

from .. import distrib
from ..checkpoint import CheckpointManager
from ..errors import CheckpointError, UserError
from ..sharded import holds_shards
from . import fsdp
from .loop_state import load_solver_state, solver_state

if TYPE_CHECKING:
    from .core import SolverCore

logger = logging.getLogger("baton.solver")


class LiveLayout:
    """Where each saved tensor goes in the running solver, for a checkpoint written on another
    world size or strategy: sharded entries load straight into shards of the live layout (each
    rank reads its own), and whole tensors of a single-file checkpoint are cut to this rank's
    shard where the live entry is sharded (FSDP). Built on first use; nothing to do without FSDP
    on either side."""

    def __init__(self, solver: SolverCore) -> None:
        self.solver = solver
        self._live: dict[str, Any] | None = None

    @property
    def live(self) -> dict[str, Any]:
        if self._live is None:
            solver = self.solver
            # Optimizer state is created at the first step; a sharded one needs a place now.
            fsdp.init_optimizer_state(fsdp.torch_optimizers([solver.stateful.get(n) for n in solver.stateful]
                                                             + solver.steppers()))
            self._live = dict(solver_state(solver, collective=False))
        return self._live

    def at(self, path: tuple[Any, ...]) -> Any:
        """The live value at a saved state's `path`: a best state's entry mirrors the live
        registered state of the same name."""
        if len(path) >= 4 and path[:2] == ("best", "states"):
            path = ("registered", *path[3:])
        value: Any = self.live
        for key in path:
            try:
                value = value[key]
            except (KeyError, IndexError, TypeError):
                return None
        return value

    def shard_like(self, state: Any) -> Any:
        if not any(fsdp.is_sharded(m) for m in self.solver.registered_modules().values()):
            return state
        best = state.get("best") or {}
        mirror = dict(self.live)
        mirror["best"] = {**best, "states": {metric: {name: self.at(("registered", name)) for name in states}
                                             for metric, states in (best.get("states") or {}).items()}}
        return fsdp.shard_like(state, mirror)


class SolverCheckpoints:
    def __init__(self, solver: SolverCore) -> None:
        self.solver = solver
        self._files: CheckpointManager | None = None  # opened on first use

    @property
    def files(self) -> CheckpointManager:
        """The XP folder's checkpoint files."""
        if self._files is None:
            solver = self.solver
            if solver.folder is None:
                raise CheckpointError("this solver has no folder to write checkpoints to; give it one")
            s = solver.settings
            self._files = CheckpointManager(
                solver.folder, solver.sig, keep_last=s.keep_last, keep_every=s.keep_every,
                async_save=s.async_save, trusted=s.trusted_checkpoints,
                solver=f"{type(solver).__module__}.{type(solver).__qualname__}",
            )
        return self._files

    def wait(self) -> None:
        """Block until a background checkpoint write is on disk."""
        if self._files is not None:
            self._files.wait()

    def save(self, *, end_of_epoch: bool) -> None:
        """Collective when distributed (RNG states and stage metrics are gathered); rank 0 writes."""
        solver = self.solver
        solver.cadence.saved()
        if not solver.settings.save:
            return
        state = solver_state(solver)
        epoch = solver.loop_state.epoch - 1
        if holds_shards(state):  # FSDP: every rank writes its shards
            self.files.save_sharded(dict(state), epoch, end_of_epoch=end_of_epoch, update=solver.loop_state.update_count)
        elif distrib.is_rank_zero():
            self.files.save(dict(state), epoch, end_of_epoch=end_of_epoch)

    def restore(self) -> bool:
        """Load the XP's newest usable checkpoint. Returns False when starting afresh."""
        solver = self.solver
        self.files.remove_stale_temporaries()
        live = LiveLayout(solver)
        data = self.files.load(twin=live.at)
        if data is None:
            self.continue_from()
            self.check_room()
            return False
        try:
            load_solver_state(solver, live.shard_like(data["state"]))
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
            # load_state_dict's first line is a header ("Error(s) in loading ...:"): name the first problem
            reason = " ".join(lines[:2]) if lines and lines[0].endswith(":") else (lines[0] if lines else type(exc).__name__)
            raise CheckpointError(
                f"checkpoint in {solver.folder} does not fit this solver ({reason}); the code or "
                "config changed since it was written: restore them, or --clear to start afresh"
            ) from None
        loop = solver.loop_state
        solver.result_logger.write_history(loop.history)
        where = f"update {loop.train_done} of epoch {loop.epoch}" if loop.train_done else f"epoch {loop.epoch}"
        logger.info("resuming %s from %s", solver.folder, where)
        return True

    def check_room(self) -> None:
        """Before a new XP's first epoch: refuse, in one line, a disk without room for the first
        checkpoint's weights (the least it holds), rather than train an epoch and then fail.

        Raises:
            UserError: less free space than the weights of every registered module, times the
                files the first save writes (checkpoint.th, and its kept copy).
        """
        solver = self.solver
        if not solver.settings.save or solver.folder is None or not distrib.is_rank_zero():
            return
        weights = sum(t.numel() * t.element_size() for module in solver.registered_modules().values()
                      for t in module.state_dict().values() if isinstance(t, torch.Tensor))
        s = solver.settings
        files = 2 if (s.keep_last or s.keep_every) else 1
        free = shutil.disk_usage(solver.folder).free
        if free < weights * files:
            raise UserError(
                f"{solver.folder} has {free / 2**20:.1f} MiB free; the first checkpoint needs at least "
                f"{weights * files / 2**20:.1f} MiB ({files} file(s) holding {weights / 2**20:.1f} MiB of weights): "
                "free space, or point baton elsewhere (BATON_XP_DIR, xp.root)"
            )

    def continue_from(self) -> None:
        """A new XP with `continue_from` set starts from that XP's model weights (its best state
        by default; `//sig/SIG/last` or `/ema` to choose), with fresh optimizers, schedules and
        loop state. Only when the XP has no checkpoint of its own: a rerun resumes itself."""
        from .references import load_strict, resolve

        solver, cfg = self.solver, self.solver.cfg
        text = cfg.get("continue_from")
        if text is None:
            return
        reference = resolve(str(text), cfg.xp.get("root"), "continue_from")
        if str(reference.cfg.solver) != str(cfg.solver):
            raise CheckpointError(
                f"continue_from={text} is XP {reference.sig} of solver '{reference.cfg.solver}'; this XP's "
                f"solver is '{cfg.solver}': continue from an XP of the same solver"
            )
        weights = reference.weights()
        for name in solver.module_state_names():
            if name not in weights:
                raise CheckpointError(
                    f"continue_from={text}: XP {reference.sig} holds no weights for '{name}' "
                    f"(it holds {', '.join(sorted(weights))})"
                )
            target = solver.stateful.get(name)
            state = fsdp.shard_like(weights[name], target.state_dict()) if fsdp.is_sharded(target) else weights[name]
            load_strict(target, state, f"XP {reference.sig} ('{name}')")
        logger.info("continuing from the %s weights of XP %s", reference.which, reference.sig)
