"""SolverCore: what a solver holds (config, folder, registered state, components) and the
methods a task calls while building. The loop that trains it is `loop.BaseSolver`.

Components, each in its own module: `settings` (the typed loop keys), `stateful` (what is
checkpointed, by name), `best` (best states per metric), `checkpoints` (saving, restoring),
`cadence` (saves inside an epoch and stop signals), `ema`, `profiler`, `result_logger`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .. import distrib
from ..checkpoint import SavedSolver
from ..data.rng import derive_seed
from ..data.stream import BatchStream
from ..errors import ConfigError
from ..loggers.base import RunInfo
from ..loggers.results import ResultLogger
from ..metrics.averager import Averager
from ..optim.amp import autocast, check_autocast, make_grad_scaler
from ..optim.ema import ModuleEMA
from ..optim.stepper import GradientStepper
from ..stateful import StateRegistry, seed_everything, unwrap
from . import ddp, fsdp
from .best import BestStates, swapped_in
from .cadence import Cadence
from .checkpoints import SolverCheckpoints
from .loop_state import History, LoopState, load_solver_state, solver_state
from .profiling import UpdateProfiler
from .runtime import apply_torch_settings, resolve_device
from .settings import LoopSettings, MetricSpec
from .stage import Stage

if TYPE_CHECKING:
    from .loop import UpdateObserver

logger = logging.getLogger("baton.solver")

_CONFIG_NORM = object()  # make_stepper's default: clip at optim.max_norm
_NO_AUTOCAST = contextlib.nullcontext()


class SolverCore:
    """Owns one training job's config, folder, state and components.

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
        self.checkpoints = SolverCheckpoints(self)
        self.cadence = Cadence(
            settings.save_every_updates if settings.save else 0,
            settings.save_every_seconds if settings.save else 0.0,
        )
        self.profiler = UpdateProfiler(cfg.profiler, self.folder or Path.cwd(), self.device)
        self.stateful = StateRegistry(self)
        self.best = BestStates(settings.best_metric)
        self.ema: ModuleEMA | None = None
        self.dataloaders: dict[str, Any] = {}
        self.loop_state = LoopState()
        self.stage: Stage | None = None
        self.stage_metrics = Averager()  # the running stage's metrics (public: front ends feed it)
        self.restored_stage_metrics: list[dict[str, Any]] | None = None
        self.train_stream: BatchStream | None = None  # created on first use
        self.update_observer: UpdateObserver | None = None  # what watches the updates, if anything
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
    def from_config(cls, cfg: Any, folder: str | Path | None = None) -> Any:
        """How launchers (`baton run`, grids) build a solver; a front end with a constructor of
        its own (Brain) overrides this instead of the constructor's signature."""
        return cls(cfg, folder)

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """Every check of `cfg` that needs no data and no model, run before an XP's folder is
        made (and by `baton run --dry_run`): a config a real run refuses is refused here, with
        the same one line. A solver with config sections of its own extends it."""
        LoopSettings.from_config(cfg)

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

    # ----------------------------------------------------------------- where training stands
    @property
    def epoch(self) -> int:
        """The epoch running now (1-based), or to run next between epochs."""
        return self.loop_state.epoch

    @property
    def history(self) -> History:
        """One entry per finished epoch: stage name -> its rank-averaged metrics."""
        return self.loop_state.history

    @property
    def update_count(self) -> int:
        """Optimizer updates done since the start of training (what schedules and EMA count)."""
        return self.loop_state.update_count

    @property
    def finished(self) -> bool:
        return self.loop_state.stopped_early or self.loop_state.epoch > self.settings.epochs

    @property
    def is_training(self) -> bool:
        return self.stage is Stage.TRAIN

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

    def register_best(self, *names: str) -> None:
        """Keep the state of these registered attributes at the best value of each tracked metric."""
        for name in names:
            if name not in self.stateful:
                raise ValueError(f"register_best('{name}'): register_stateful('{name}') first")
        self.best.names.extend(names)

    def track_best(self, name: str, direction: str = "min", stage: str = "valid") -> None:
        """Also keep a best state by metric `name` of `stage` (valid or train) beside `best_metric`.

        Evaluate and generate run with a best state swapped in, not the weights being trained,
        so their metrics cannot select a state to keep.
        """
        if stage not in ("valid", "train"):
            raise ConfigError(
                f"track_best('{name}', stage='{stage}'): {stage} runs with the best state, not the "
                "trained weights; track a metric of valid or train"
            )
        self.best.track(MetricSpec(name, stage, direction))

    def _adopt_best_metric_override(self) -> None:
        """AudioCraft's solvers name their best metric in code: a `best_metric_name` property or
        a `best_metric()` method. Honour either (None: keep no best state) over `best_metric.name`."""
        cls = type(self)
        if "best_metric_name" in dir(cls):
            name = self.best_metric_name  # type: ignore[attr-defined]
        elif callable(getattr(cls, "best_metric", None)):
            name = self.best_metric()  # type: ignore[attr-defined]
        else:
            return
        primary = self.settings.best_metric
        self.best.set_primary(None if name is None else MetricSpec(str(name), primary.stage, primary.direction))

    # ----------------------------------------------------------------- best and EMA states
    def best_candidate(self, name: str, stage: str) -> Any:
        """The state of registered `name` that scored at `stage` (the EMA weights for valid)."""
        if stage == "valid" and self.ema is not None and name in self.ema.modules:
            return self.ema.averages[name]
        return self.stateful.get(name).state_dict()

    @property
    def best_value(self) -> float | None:
        """The best value of `best_metric` so far."""
        return self.best.value()

    @property
    def best_state(self) -> dict[str, Any]:
        """The state kept at the best `best_metric` ({} before its stage first ran)."""
        return self.best.state()

    def swap_best_state(self, metric: str | None = None) -> Any:
        """Context: run the block with the best state for `metric` (`best_metric` when None)."""
        return swapped_in(self.stateful, self.best.state(metric))

    def gathered(self) -> Any:
        """Context for evaluation under FSDP: every module's full weights, so any of its methods
        may run (not only `forward`). Enter it inside a best/EMA swap: weights loaded while
        gathered would be lost. A no-op without FSDP."""
        return fsdp.gathered(list(self.registered_modules().values()), self.settings.fsdp_reshard_after_forward)

    @contextmanager
    def swap_ema_state(self) -> Iterator[None]:
        if self.ema is None:
            yield
            return
        with self.ema.swapped():
            yield

    # ----------------------------------------------------------------- conveniences
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
        """A GradientStepper with its own GradScaler (fp16), clipping (`optim.max_norm` unless
        given) and non-finite loss guard (`optim.nonfinite_patience`); `name` prefixes its
        metrics when a solver has several."""
        settings = self.settings
        return GradientStepper(
            optimizer, scheduler, modules=modules, name=name,
            max_norm=settings.max_norm if max_norm is _CONFIG_NORM else max_norm,
            scaler=make_grad_scaler(settings.autocast, settings.autocast_dtype, self.device),
            nonfinite_patience=settings.nonfinite_patience,
        )

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

    def training_stream(self) -> BatchStream:
        """The resumable stream of training batches (its position is checkpointed)."""
        if self.train_stream is None:
            if "train" not in self.dataloaders:
                raise ConfigError("the solver has no 'train' dataloader; set self.dataloaders['train'] in build")
            self.train_stream = BatchStream(self.dataloaders["train"], seed=self.settings.seed)
        return self.train_stream

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> SavedSolver:
        """Everything that shapes the rest of training; layout in `baton.checkpoint`. Collective."""
        return solver_state(self)

    def load_state_dict(self, state: SavedSolver) -> None:
        load_solver_state(self, state)

    def save_checkpoint(self, *, end_of_epoch: bool) -> None:
        """Collective when distributed; rank 0 writes. A front end may write elsewhere (Brain)."""
        self.checkpoints.save(end_of_epoch=end_of_epoch)

    def restore(self) -> bool:
        """Load the XP's newest usable checkpoint. Returns False when starting afresh."""
        return self.checkpoints.restore()

    def wait_for_saves(self) -> None:
        self.checkpoints.wait()

    # ----------------------------------------------------------------- lifecycle
    def prepare(self) -> None:
        """Once, when training starts: what was registered until now is compiled and, on several
        ranks, wrapped in DDP or sharded with FSDP2 (`distributed.strategy`), so modules and
        optimizers may be created after construction."""
        if self._prepared:
            return
        self._prepared = True
        if self.settings.compile:
            for module in self.registered_modules().values():
                unwrap(module).compile()  # in place: state_dict keys stay plain
        if distrib.world_size() > 1 and self.settings.strategy == "fsdp":
            self._shard()
        elif distrib.world_size() > 1:
            s = self.settings
            wrappers = ddp.wrap_trainable(
                self.registered_modules(), self.device,
                find_unused_parameters=s.find_unused_parameters, broadcast_buffers=s.broadcast_buffers,
            )
            for name, wrapper in wrappers.items():
                self.replace_module(name, wrapper)
            ddp.rewire_steppers(self.steppers(), wrappers)

    def _shard(self) -> None:
        """FSDP2 in place of DDP (see `fsdp`): the modules stay where they are, their parameters
        become shards, so the optimizers and the EMA are pointed at the shards."""
        s, modules = self.settings, self.registered_modules()
        owners = fsdp.parameter_owners(modules.values())
        sharded = fsdp.shard_trainable(
            modules, blocks=s.fsdp_blocks, policy=fsdp.mixed_precision(s.autocast, s.autocast_dtype),
            reshard_after_forward=s.fsdp_reshard_after_forward,
        )
        values = [self.stateful.get(n) for n in self.stateful] + self.steppers()
        fsdp.repoint_optimizers(fsdp.torch_optimizers(values), owners)
        if self.ema is not None:
            self.ema.restart()
        logger.info("FSDP: %s sharded over %d ranks%s", ", ".join(sharded), distrib.world_size(),
                    f" (blocks: {', '.join(s.fsdp_blocks)})" if s.fsdp_blocks else "")

    def close(self) -> None:
        """Wait for a background save, then close the log and TensorBoard files."""
        self.wait_for_saves()
        self.profiler.stop()
        self.result_logger.close(finished=self.finished)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
