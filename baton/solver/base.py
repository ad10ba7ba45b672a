"""BaseSolver: the epoch loop, stage scheduling, state, checkpoints and logging.

The loop, top to bottom (`run`):

    prepare    compile and, on several ranks, wrap trainable modules in DDP
    restore    the XP's checkpoint, if any
    for each epoch until optim.epochs (or until `should_stop()`):
        train      optim.updates_per_epoch updates, or one full pass when it is null
        valid      with the EMA weights when EMA is on
        evaluate   every evaluate.every epochs and at the last one, with the best state
        generate   every generate.every epochs and at the last one, with the best state
        commit     history, best states, checkpoint

Front ends provide the stages: StandardSolver (AudioCraft-like) and the others to come. Helpers
each hold one concern: `settings` (typed loop keys), `cadence` (saves and stop signals), `ddp`,
`profiling`; three mix their methods into BaseSolver: `iteration.TrainingIteration` (updates
and evaluation passes), `best.BestStateTracking` (best states) and `snapshot.Checkpointing`
(what a checkpoint holds, save, restore). Everything that shapes the future of training is in
the checkpoint, so an XP killed at any update and run again ends with the same weights as one
never stopped.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import distrib
from ..checkpoint import CheckpointManager
from ..data.rng import derive_seed
from ..errors import ConfigError
from ..loggers.base import RunInfo
from ..logging import ResultLogger
from ..metrics.averager import Averager
from ..optim.amp import autocast, check_autocast, make_grad_scaler
from ..optim.ema import ModuleEMA
from ..optim.stepper import GradientStepper
from ..state import StateRegistry, seed_everything, unwrap
from . import ddp
from .best import BestStates, BestStateTracking
from .cadence import Cadence
from .iteration import TrainingIteration
from .profiling import UpdateProfiler
from .runtime import Interrupted, apply_torch_settings, resolve_device
from .settings import LoopSettings
from .snapshot import Checkpointing
from .stage import Stage

logger = logging.getLogger("baton.solver")

_CONFIG_NORM = object()
_NO_AUTOCAST = contextlib.nullcontext()  # make_stepper's default: clip at optim.max_norm


class BaseSolver(TrainingIteration, BestStateTracking, Checkpointing):
    """Owns one training job: its config, folder, state and loop.

    Args:
        cfg: the resolved config (see conf/solver/default.yaml for the shared keys).
        folder: the XP folder; defaults to `cfg.xp.folder`, which `baton.config.compose` fills.
    """

    needs_folder = True  # a Brain may run without one (console only), as SpeechBrain's does

    def __init__(self, cfg: Any, folder: str | Path | None = None) -> None:
        self.cfg = cfg
        folder = folder if folder is not None else cfg.xp.folder
        if folder is None and self.needs_folder:
            raise ConfigError(
                "the solver has no XP folder: pass folder=... or build the config with "
                "baton.config.compose, which sets xp.folder"
            )
        self.folder: Path | None = None if folder is None else Path(folder)
        self.sig: str | None = cfg.xp.sig
        self.settings = settings = LoopSettings.from_config(cfg)
        self.device = resolve_device(str(cfg.device))
        check_autocast(settings.autocast, settings.autocast_dtype, self.device)
        apply_torch_settings(cfg)
        seed_everything(settings.seed)
        run = RunInfo(
            self.folder or Path.cwd(), self.sig, params=dict(cfg.xp.get("delta") or {}),
            root=Path(cfg.xp.root) if cfg.xp.get("root") else None,
        )
        self.result_logger = ResultLogger(self.folder, cfg.logging, run)
        self._checkpoints: CheckpointManager | None = None  # created on first use
        self.cadence = Cadence(
            settings.save_every_updates if settings.save else 0,
            settings.save_every_seconds if settings.save else 0.0,
        )
        self.profiler = UpdateProfiler(cfg.profiler, self.folder or Path.cwd(), self.device)
        self.stateful = StateRegistry(self)
        self.best = BestStates(settings.best_metric)
        self.ema: ModuleEMA | None = None
        self.dataloaders: dict[str, Any] = {}
        self.history: list[dict[str, dict[str, float]]] = []
        self.epoch = 1
        self.update = 0
        self.stage: Stage | None = None
        self.stage_metrics = Averager()  # the running stage's metrics (public: front ends feed it)
        self.stopped_early = False
        self.epoch_results: dict[str, dict[str, float]] = {}  # this epoch's finished stages
        self.train_done = 0  # updates of this epoch's train stage already done
        self.restored_stage_metrics: list[dict[str, Any]] | None = None
        self._train_stream = None
        self._prepared = False
        try:
            self.build()
        except BaseException:
            self.result_logger.close()  # no handler left writing into this XP's log
            raise
        self._adopt_best_metric_override()
        # Built from the shared seed (the same initial weights everywhere); trained from one
        # stream per rank, so ranks do not draw the same dropout masks.
        seed_everything(derive_seed(settings.seed, distrib.rank()))

    @classmethod
    def from_config(cls, cfg: Any, folder: str | Path | None = None) -> BaseSolver:
        """How launchers (`baton run`, grids) build a solver; a front end with a constructor of
        its own (Brain) overrides this instead of the constructor's signature."""
        return cls(cfg, folder)

    # ----------------------------------------------------------------- to override
    def build(self) -> None:
        """Build models, optimizers and dataloaders, and register what is checkpointed."""
        raise NotImplementedError

    def stages(self) -> list[tuple[Stage, Callable[[], dict[str, float]]]]:
        """The stages of the current epoch, in order, each with the function that runs it."""
        raise NotImplementedError

    def before_stage(self, stage: Stage) -> None:
        """Engine hook, called before each stage."""

    def after_stage(self, stage: Stage, metrics: dict[str, float]) -> None:
        """Engine hook, called after each stage with its (rank-averaged) metrics."""

    def should_stop(self) -> bool:
        """Called after each epoch's checkpointable work: True ends training (early stopping)."""
        return False

    # ----------------------------------------------------------------- registration
    def register_stateful(self, *names: str) -> None:
        """Checkpoint these attributes (modules, optimizers, steppers, plain values)."""
        self.stateful.register(*names)

    def register_ema(self, *names: str) -> None:
        """Average the weights of these modules when `optim.ema.use` is true (else a no-op)."""
        if not self.settings.ema_use:
            return
        if self.ema is None:
            self.ema = ModuleEMA({}, self.settings.ema_decay, self.settings.ema_device)
        for name in names:
            self.ema.add(name, unwrap(getattr(self, name)))

    # ----------------------------------------------------------------- conveniences
    @property
    def is_training(self) -> bool:
        return self.stage is Stage.TRAIN

    def autocast(self) -> Any:
        """Context for forward passes: mixed precision when `autocast` is on."""
        if not self.settings.autocast:
            return _NO_AUTOCAST  # reusable: no object made per forward
        return autocast(True, self.settings.autocast_dtype, self.device)

    def to_device(self, batch: Any) -> Any:
        from .runtime import to_device

        return to_device(batch, self.device)

    def make_stepper(
        self, optimizer: torch.optim.Optimizer, scheduler: Any = None, *modules: nn.Module,
        max_norm: Any = _CONFIG_NORM, name: str | None = None,
    ) -> GradientStepper:
        """A GradientStepper with its own GradScaler (fp16) and clipping (`optim.max_norm` unless
        given); `name` prefixes its metrics when a solver has several."""
        settings = self.settings
        return GradientStepper(
            optimizer, scheduler, modules=modules, name=name,
            max_norm=settings.max_norm if max_norm is _CONFIG_NORM else max_norm,
            scaler=make_grad_scaler(settings.autocast, settings.autocast_dtype, self.device),
        )

    @property
    def total_updates(self) -> int:
        """Updates in the whole run, for LR schedules."""
        return self.settings.epochs * self.updates_per_epoch()

    @property
    def finished(self) -> bool:
        return self.stopped_early or self.epoch > self.settings.epochs

    def registered_modules(self) -> dict[str, nn.Module]:
        """Registered modules as assigned (a DDP wrapper stays wrapped: train/eval go through it)."""
        return {n: v for n in self.stateful if isinstance(v := getattr(self, n), nn.Module)}

    def module_state_names(self) -> list[str]:
        """The registered state that holds model weights (what `export --source last` writes)."""
        return list(self.registered_modules())

    def replace_module(self, name: str, module: nn.Module) -> None:
        """Put `module` (a DDP wrapper) where registered module `name` was."""
        setattr(self, name, module)

    def steppers(self) -> list[GradientStepper]:
        return [v for n in self.stateful if isinstance(v := self.stateful.get(n), GradientStepper)]

    # ----------------------------------------------------------------- lifecycle
    def prepare(self) -> None:
        """Once, when training starts: what was registered until now is compiled and, on several
        ranks, wrapped in DDP (so modules and optimizers may be created after construction)."""
        if self._prepared:
            return
        self._prepared = True
        if self.settings.compile:
            for module in self.registered_modules().values():
                unwrap(module).compile()  # in place: state_dict keys stay plain
        if distrib.world_size() > 1:
            s = self.settings
            wrappers = ddp.wrap_trainable(
                self.registered_modules(), self.device,
                find_unused_parameters=s.find_unused_parameters, broadcast_buffers=s.broadcast_buffers,
            )
            for name, wrapper in wrappers.items():
                self.replace_module(name, wrapper)
            ddp.rewire_steppers(self.steppers(), wrappers)

    def close(self) -> None:
        """Wait for a background save, then close the log and TensorBoard files."""
        self.wait_for_saves()
        self.profiler.stop()
        self.result_logger.close(finished=self.finished)

    def __enter__(self) -> BaseSolver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ----------------------------------------------------------------- the loop
    def run(self) -> list[dict[str, dict[str, float]]]:
        """Train to `optim.epochs`, resuming from the XP folder's checkpoint. Returns the history.

        The log stays open afterwards (evaluate again, inspect); `close()` it, or use the
        solver as a context manager.
        """
        with self.training():
            self.prepare()
            self.restore()
            while not self.finished:
                self.run_epoch()
                self.commit()
                self.stop_if_signalled()
        return self.history

    @contextmanager
    def training(self) -> Iterator[None]:
        """Around a training run: stop signals are caught (the loop checkpoints and stops at
        the next update), and background saves are finished on the way out."""
        self.cadence.signal.install()
        try:
            yield
        except Interrupted as stop:
            saved = "checkpoint saved; run again to resume" if self.settings.save else "checkpoint.save=false: nothing saved"
            logger.info("%s, %s", stop.describe(), saved)
            raise
        finally:
            self.cadence.signal.uninstall()
            self.wait_for_saves()
            self.profiler.stop()

    def stop_if_signalled(self) -> None:
        """After a commit: a stop signal that came during valid/evaluate/generate ends the run
        here (the epoch is whole in the checkpoint); after the last epoch, the run is done."""
        stop = self.cadence.stop_at_epoch_end()
        if stop is not None and not self.finished:
            raise Interrupted(stop, self.epoch - 1)

    def run_epoch(self) -> None:
        for stage, run_stage in self.stages():
            if stage.value in self.epoch_results:  # done before a mid-epoch restart
                continue
            metrics = self.run_stage(stage, run_stage)
            self.epoch_results[stage.value] = metrics
            self.best.update(stage.value, metrics, self._best_candidate)

    def run_stage(
        self, stage: Stage, run_stage: Callable[[], dict[str, float]], name: str | None = None,
        epoch: int | None = None,
    ) -> dict[str, float]:
        """Run one stage with its modules' train/eval mode, hooks, and summary logged as `name`."""
        self.stage = stage = Stage.of(stage)
        for module in self.registered_modules().values():
            module.train(stage is Stage.TRAIN)
        self.stage_metrics = Averager()
        if self.restored_stage_metrics is not None and stage is Stage.TRAIN:
            self.stage_metrics = Averager.from_rank_states(self.restored_stage_metrics)
            self.restored_stage_metrics = None
        self.before_stage(stage)
        skipped = [s.skipped_updates for s in self.steppers()]
        start = time.monotonic()
        with torch.set_grad_enabled(stage is Stage.TRAIN):
            metrics = run_stage()
        if stage is Stage.TRAIN:
            for stepper, before in zip(self.steppers(), skipped, strict=True):
                if stepper.scaler is not None:
                    metrics[stepper.prefix + "skipped_steps"] = float(stepper.skipped_updates - before)
        self.after_stage(stage, metrics)
        self.stage = None
        self.result_logger.log_summary(name or stage.value, epoch or self.epoch, metrics)
        logger.debug("%s took %.1fs", name or stage.value, time.monotonic() - start)
        return metrics

    def should_run_every(self, every: int | None) -> bool:
        """True for stages that run every N epochs, and always at the last epoch."""
        if self.epoch == self.settings.epochs:
            return True
        return every is not None and every > 0 and self.epoch % every == 0

    def commit(self) -> None:
        """End an epoch: history, early-stop decision, checkpoint, then history.jsonl (never
        ahead of the checkpoint)."""
        self.history.append({k: v for k, v in self.epoch_results.items() if v})
        self.epoch_results = {}
        self.train_done = 0
        self.epoch += 1
        stop = float(bool(self.should_stop()))
        if distrib.is_distributed():
            stop = distrib.all_reduce_max([stop])[0]  # every rank stops, or none
        if stop and not self.finished:
            logger.info("should_stop() after epoch %d: training ends early", self.epoch - 1)
            self.stopped_early = True
        self.save_checkpoint(end_of_epoch=True)
        self.result_logger.write_history(self.history)

    def evaluate_stage(self, name: str, run_stage: Callable[[], dict[str, float]], best: str | None = None) -> dict[str, float]:
        """Run an evaluation outside the epoch loop (e.g. after training, on another test set),
        with the best state of metric `best` (`best_metric` when None) loaded.

        Its metrics are logged as `name`, added under that name to the last epoch's history,
        and checkpointed, so `baton info` and a later run see them.
        """
        if not self.history:
            self.restore()
        with self.swap_best_state(best):
            metrics = self.run_stage(Stage.EVALUATE, run_stage, name=name, epoch=len(self.history) or None)
        if self.history:
            self.history[-1][name] = metrics
            self.save_checkpoint(end_of_epoch=False)
            self.result_logger.write_history(self.history)
        return metrics

    # ----------------------------------------------------------------- EMA
    @contextmanager
    def swap_ema_state(self) -> Iterator[None]:
        if self.ema is None:
            yield
            return
        with self.ema.swapped():
            yield
