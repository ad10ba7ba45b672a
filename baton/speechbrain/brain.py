"""Brain: SpeechBrain's front end, on the baton engine.

A SpeechBrain recipe runs after changing its import line (`import baton as sb`): the same
constructor, overridable methods and hooks, in the same order:

    on_fit_start()                      prepare (compile, DDP), init_optimizers, recover
    per epoch of the epoch counter:
        on_stage_start(TRAIN, epoch)
        fit_batch(batch) per batch      compute_forward -> compute_objectives ->
                                        check_loss_isfinite -> backward (no_sync while
                                        accumulating) -> optimizers_step at each update's end
        on_stage_end(TRAIN, loss, epoch)
        on_stage_start(VALID, epoch) / evaluate_batch per batch / on_stage_end(VALID, loss, epoch)
    evaluate(test_set, min_key=...)     on_evaluate_start (loads the best checkpoint) -> TEST

Underneath, the loop is the engine's (`run_epoch`, `run_updates`, `loader_batches`): resumable
batches, updates counted at their boundary, where stop signals and `ckpt_interval_*` saves
happen. What differs from SpeechBrain, and why, is in docs/brain.md.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from .. import distrib
from ..checkpoint import SavedSolver
from ..errors import ConfigError
from ..optim.amp import autocast
from ..optim.stepper import GradientStepper, OptimizerGroup, held_sync
from ..solver.loop import BaseSolver, UpdateBatches
from ..solver.loop_state import LoopState
from ..solver.runtime import Interrupted, batch_size_of
from ..solver.stage import Stage
from .brain_saves import check_evaluation_key, recover_brain, save_brain, save_unrequested
from .epoch_counter import FitEpochs
from .loaders import brain_dataloader
from .nonfinite import NonFiniteGuard, finite
from .run_options import PRECISIONS, brain_config, resolve_run_opts, run_opts_from_config

logger = logging.getLogger("baton.solver")


class Brain(BaseSolver):
    """SpeechBrain's `Brain`: subclass it and override `compute_forward` and
    `compute_objectives` (and any hook).

    Args:
        modules: name -> module; held in `self.modules` (a ModuleDict) on `self.device`.
        opt_class: called with the modules' parameters to build `self.optimizer`.
        hparams: available as `self.hparams.<name>`; run options missing from `run_opts`
            are looked up here too.
        run_opts: SpeechBrain's run options (see `run_options.RUN_OPT_DEFAULTS`), e.g. from
            `baton.parse_arguments(sys.argv[1:])`.
        checkpointer: a `baton.Checkpointer`; without one nothing is saved, as in SpeechBrain.
        config: (baton) the composed config of an XP, when `baton run` builds the Brain.
    """

    needs_folder = False

    def __init__(
        self,
        modules: Mapping[str, nn.Module] | None = None,
        opt_class: Callable[..., torch.optim.Optimizer] | None = None,
        hparams: Mapping[str, Any] | None = None,
        run_opts: Mapping[str, Any] | None = None,
        checkpointer: Any = None,
        *,
        config: Any = None,
    ) -> None:
        hparams = dict(hparams or {})
        given = dict(run_opts or {})
        if config is not None:
            given = {**run_opts_from_config(config), **given}
        options = resolve_run_opts(given, hparams)
        for name, value in options.items():
            if name != "device":
                setattr(self, name, value)
        self.hparams = SimpleNamespace(**hparams)
        self.modules = nn.ModuleDict(dict(modules or {}))
        self.opt_class = opt_class
        self.checkpointer = checkpointer
        self.optimizer: torch.optim.Optimizer | None = None
        self.optimizers_dict: dict[str, torch.optim.Optimizer] = {}
        self.avg_train_loss = 0.0
        self.step = 0  # batches of the running stage so far (1-based in fit_batch), as SpeechBrain's
        self.optimizer_step = 0
        self.nonfinite = NonFiniteGuard(int(self.nonfinite_patience))  # type: ignore[attr-defined]
        self._should_step = True
        self._stepper: GradientStepper | None = None  # built at the first update (after DDP wrapping)
        self._snapshot: SavedSolver | None = None
        self._restoring = False
        self._loop_recovered = False
        self._epochs: FitEpochs | None = None  # the running fit's epoch counter
        self._fit_finished = False  # latched when fit ends: see finished
        self.epoch_value: Any = None  # the epoch counter's value for the running epoch
        self.stage_results: dict[str, float] = {}  # the last stage's metrics over all items and ranks
        # Joins the world torchrun or srun describe (a no-op for one process), as ddp_init_group does.
        distrib.ddp_init_group(options)
        super().__init__(brain_config(options, config), folder=options["output_folder"])

    def build(self) -> None:
        self.modules.to(self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.settings.autocast and self.settings.autocast_dtype == "float16")
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("brain", self, custom_save_hook=save_brain, custom_load_hook=recover_brain)
            if self.scaler.is_enabled():
                self.checkpointer.add_recoverable("scaler", self.scaler, optional_load=True)

    @classmethod
    def from_config(cls, cfg: Any, folder: str | Path | None = None) -> BaseSolver:
        raise NotImplementedError(f"{cls.__name__}.from_config: a Brain run by `baton run` builds its modules, "
                                  "hparams and Checkpointer there; see baton/tasks/classification.py")

    # ----------------------------------------------------------------- to override
    def compute_forward(self, batch: Any, stage: Stage) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement compute_forward(batch, stage)")

    def compute_objectives(self, predictions: Any, batch: Any, stage: Stage) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement compute_objectives(predictions, batch, stage)")

    def on_fit_start(self) -> None:
        """Compile and wrap the modules (DDP), build the optimizers, then resume from the
        Checkpointer's newest checkpoint (the loop's position included)."""
        self.prepare()
        self.init_optimizers()
        if self.checkpointer is not None:
            distrib.barrier()  # every rank reads the same checkpoint list
            self.checkpointer.recover_if_possible()

    def init_optimizers(self) -> None:
        if self.opt_class is None:
            return
        params: Any = self.modules.parameters()
        if self.remove_vector_weight_decay:  # type: ignore[attr-defined]
            vectors = [p for p in self.modules.parameters() if p.ndim <= 1]
            matrices = [p for p in self.modules.parameters() if p.ndim > 1]
            params = [{"params": matrices}, {"params": vectors, "weight_decay": 0.0}]
        self.optimizer = self.opt_class(params)
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)

    def on_stage_start(self, stage: Stage, epoch: Any = None) -> None:
        """Called at the start of each stage (every rank)."""

    def on_stage_end(self, stage: Stage, stage_loss: float | None, epoch: Any = None) -> None:
        """Called (every rank) with the stage's loss over all items of all ranks: save here."""

    def on_evaluate_start(self, max_key: str | None = None, min_key: str | None = None) -> None:
        """Load the best checkpoint by `max_key`/`min_key` (the newest without either)."""
        if self.checkpointer is not None:
            distrib.barrier()
            check_evaluation_key(self.checkpointer, max_key or min_key)
            self.checkpointer.recover_if_possible(max_key=max_key, min_key=min_key)

    def on_fit_batch_start(self, batch: Any, should_step: bool) -> None:
        """Called before `fit_batch` does its work."""

    def on_fit_batch_end(self, batch: Any, outputs: Any, loss: torch.Tensor, should_step: bool) -> None:
        """Called after `fit_batch` did its work (and stepped, when `should_step`)."""

    def freeze_optimizers(self, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.optim.Optimizer]:
        """The optimizers that step now (override to freeze some, e.g. in a GAN's phases)."""
        return optimizers

    # ----------------------------------------------------------------- a training batch
    def fit_batch(self, batch: Any) -> torch.Tensor:
        """Forward, loss and backward of one batch; the optimizers step at the update's last batch."""
        should_step = self._should_step
        self.on_fit_batch_start(batch, should_step)
        with self.no_sync(not should_step):
            with self.autocast():
                outputs = self.compute_forward(batch, Stage.TRAIN)
                loss = self.compute_objectives(outputs, batch, Stage.TRAIN)
            self.check_loss_isfinite(loss)
            self.stepper.backward(loss)  # divided by the update's batches, scaled for fp16
        if should_step:
            self.optimizers_step()
        self.on_fit_batch_end(batch, outputs, loss, should_step)
        return loss.detach().cpu()

    def evaluate_batch(self, batch: Any, stage: Stage) -> torch.Tensor:
        with self._eval_autocast():
            outputs = self.compute_forward(batch, stage=stage)
            loss = self.compute_objectives(outputs, batch, stage=stage)
        return loss.detach().cpu()

    def check_loss_isfinite(self, loss: torch.Tensor) -> bool:
        """False for a NaN/inf loss: its update will be skipped. More than `nonfinite_patience`
        in a row stop training (at once on one rank; at the update's end, together, on several)."""
        return self.nonfinite.check(loss, self.epoch, self.step)

    def check_gradients(self) -> None:
        """Drop non-finite gradients (with a warning), so the optimizers skip those parameters."""
        for name, param in self.modules.named_parameters():
            if param.requires_grad and param.grad is not None and not torch.isfinite(param.grad).all():
                param.grad = None
                logger.warning("gradient of %s is not finite: set to None", name)

    def optimizers_step(self) -> None:
        """Unscale, clip (`max_grad_norm`), step every optimizer `freeze_optimizers` leaves, and
        zero the gradients; an update with a non-finite loss on any rank is skipped."""
        if self.nonfinite.skip_update(self.epoch, self.step):
            self.zero_grad(set_to_none=True)
            return
        stepper = self.stepper
        chosen = self.freeze_optimizers(self.optimizers_dict)
        # One optimizer steps as itself; several as a group (rebuilt only when the choice changes).
        if len(chosen) == 1:
            stepper.optimizer = next(iter(chosen.values()))
        elif not isinstance(stepper.optimizer, OptimizerGroup) or stepper.optimizer.optimizers != chosen:
            stepper.optimizer = OptimizerGroup(chosen)
        check = not self.scaler.is_enabled() and self.skip_nonfinite_grads  # type: ignore[attr-defined]
        stepper.finish_update(before_step=self.check_gradients if check else None)
        self.optimizer_step += 1

    @property
    def stepper(self) -> GradientStepper:
        """The engine's stepper over the Brain's optimizers (accumulation, fp16 scaling, clipping);
        its non-finite guard is off: SpeechBrain's `check_loss_isfinite` decides."""
        if self._stepper is None:
            norm = float(self.max_grad_norm)  # type: ignore[attr-defined]
            self._stepper = GradientStepper(
                OptimizerGroup(self.optimizers_dict), modules=list(self.modules.values()),
                max_norm=norm if norm > 0.0 else None, scaler=self.scaler if self.scaler.is_enabled() else None,
            )
        return self._stepper

    def zero_grad(self, set_to_none: bool = False) -> None:
        for optimizer in self.freeze_optimizers(self.optimizers_dict).values():
            optimizer.zero_grad(set_to_none)

    def no_sync(self, use: bool = True) -> contextlib.ExitStack:
        """Hold back DDP's gradient all-reduce while accumulating (around forward and backward)."""
        return held_sync(self.modules.values(), use)

    def update_average(self, loss: torch.Tensor, avg_loss: float) -> float:
        """SpeechBrain's running mean over the stage's batches (non-finite losses left out)."""
        if finite(loss):
            avg_loss -= avg_loss / self.step
            avg_loss += float(loss) / self.step
        return avg_loss

    @property
    def training_ctx(self) -> Any:
        """SpeechBrain's name for the training precision context (`with self.training_ctx:`)."""
        return self.autocast()

    @property
    def evaluation_ctx(self) -> Any:
        """SpeechBrain's name for the evaluation precision context."""
        return self._eval_autocast()

    def _eval_autocast(self) -> Any:
        dtype = PRECISIONS[self.eval_precision]  # type: ignore[attr-defined]
        if dtype is None:
            return contextlib.nullcontext()
        return autocast(True, dtype, self.device)

    # ----------------------------------------------------------------- data
    def make_dataloader(
        self, dataset: Any, stage: Stage | str, ckpt_prefix: str | None = "dataloader-", **loader_kwargs: Any
    ) -> DataLoader:
        """A DataLoader whose order is a function of (seed, epoch) and that starts mid-epoch on
        resume; under several ranks each gets its share of the training data (a
        DistributedSampler's role), and all of the valid and test data.

        `ckpt_prefix` is accepted for SpeechBrain's sake: the data position is in the Brain's
        own checkpoint state. A `sampler` or `batch_sampler` of yours, or an IterableDataset, is
        used as given (resume then replays the batches before the position).
        """
        return brain_dataloader(dataset, Stage.of(stage), self.settings.seed, loader_kwargs)

    def _loader(self, data: Any, stage: Stage, kwargs: Mapping[str, Any]) -> Any:
        return data if isinstance(data, DataLoader) else self.make_dataloader(data, stage, **kwargs)

    # ----------------------------------------------------------------- fit and evaluate
    def fit(
        self,
        epoch_counter: Iterable[Any],
        train_set: Any,
        valid_set: Any = None,
        progressbar: bool | None = None,
        train_loader_kwargs: Mapping[str, Any] | None = None,
        valid_loader_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        """Train over the epochs of `epoch_counter` (an `EpochCounter`, or any iterable such as
        `range(n)`), validating after each; resumes from the Checkpointer when it has a checkpoint."""
        self.dataloaders = {"train": self._loader(train_set, Stage.TRAIN, train_loader_kwargs or {})}
        if valid_set is not None:
            self.dataloaders["valid"] = self._loader(valid_set, Stage.VALID, valid_loader_kwargs or {})
        if progressbar is not None:
            self.result_logger.cfg.progress = bool(progressbar)
        self.train_stream = None
        self.loop_state, self._fit_finished = LoopState(), False
        if not isinstance(epoch_counter, Iterable):
            raise TypeError(f"fit: epoch_counter must be an EpochCounter or an iterable such as range(n), not {type(epoch_counter).__name__}")
        if isinstance(getattr(self.dataloaders["train"], "dataset", None), IterableDataset) and not hasattr(self.dataloaders["train"].dataset, "__len__"):
            raise ConfigError("fit: the training set is an IterableDataset without a length; give it __len__ (batches per epoch come from it)")
        with self.training():
            self._restoring, self._loop_recovered = True, False  # a recipe's on_fit_start may recover by itself
            try:
                self.on_fit_start()
            finally:
                self._restoring = False
            self._epochs = FitEpochs(epoch_counter)
            for epoch in self._epochs.remaining(self.loop_state, self._loop_recovered):
                self.epoch_value = epoch
                self.run_epoch()
                self.commit()
                self.stop_if_signalled()
                if self.debug and self.epoch > self.debug_epochs:  # type: ignore[attr-defined]
                    break
                if self._step_limit_reached():
                    break
        # Latched here: evaluate(min_key=...) then recovers the best checkpoint, whose epoch
        # counter may stand before the last epoch, and the run is still finished.
        self._fit_finished = self.finished

    @property
    def finished(self) -> bool:
        if self._fit_finished:
            return True
        return self._epochs.finished(self.loop_state) if self._epochs is not None else self.loop_state.stopped_early

    def _step_limit_reached(self) -> bool:
        limit = self.optimizer_step_limit  # type: ignore[attr-defined]
        return limit is not None and self.optimizer_step >= int(limit)

    def evaluate(
        self,
        test_set: Any,
        max_key: str | None = None,
        min_key: str | None = None,
        progressbar: bool | None = None,
        test_loader_kwargs: Mapping[str, Any] | None = None, *, name: str | None = None,
    ) -> float:
        """Evaluate the best checkpoint (by `max_key`/`min_key`) on `test_set`; returns the
        average test loss. Its metrics join the last epoch's history as `name` (baton): 'test',
        then 'test_2', ... for each further test set, so none overwrites another."""
        loader = self._loader(test_set, Stage.TEST, {**(test_loader_kwargs or {}), "ckpt_prefix": None})
        if progressbar is not None:
            self.result_logger.cfg.progress = bool(progressbar)
        self.on_evaluate_start(max_key=max_key, min_key=min_key)
        name = name or self.loop_state.unused_result_name("test")
        metrics = self.run_stage(Stage.TEST, lambda: self._evaluation_stage(loader, Stage.TEST), name=name,
                                 epoch=len(self.history) or None)
        if self.history:
            self.history[-1][name] = metrics
            self.result_logger.write_history(self.history)
        return metrics.get("loss", float("nan"))

    # ----------------------------------------------------------------- the engine's stages
    def stages(self) -> list[tuple[Stage, Callable[[], dict[str, float]]]]:
        stages: list[tuple[Stage, Callable[[], dict[str, float]]]] = [(Stage.TRAIN, self._train_stage)]
        if "valid" in self.dataloaders:
            stages.append((Stage.VALID, lambda: self._evaluation_stage(self.dataloaders["valid"], Stage.VALID)))
        return stages

    def registered_modules(self) -> dict[str, nn.Module]:
        return dict(self.modules.items())

    def replace_module(self, name: str, module: nn.Module) -> None:
        self.modules[name] = module

    def before_stage(self, stage: Stage) -> None:
        if stage is Stage.TRAIN:
            self.zero_grad()
            if not self.loop_state.train_done:  # a mid-epoch resume keeps the restored counts
                self.nonfinite.in_a_row = self.nonfinite.losses = 0
        self.on_stage_start(stage, self._stage_epoch(stage))

    def after_stage(self, stage: Stage, metrics: dict[str, float]) -> None:
        self.stage_results = metrics  # all of the stage's metrics, for on_stage_end
        if stage is not Stage.TEST:
            self.loop_state.epoch_results[stage.value] = metrics  # what a checkpoint saved in the hook holds
        if self.checkpointer is not None:
            self._snapshot = self.state_dict()  # collective: the hook may save on rank 0 only
        try:
            self.on_stage_end(stage, metrics.get("loss"), self._stage_epoch(stage))
        finally:
            self._snapshot = None

    def _stage_epoch(self, stage: Stage) -> Any:
        return None if stage is Stage.TEST else self.epoch_value

    def _train_stage(self) -> dict[str, float]:
        metrics = self.stage_metrics

        def one_update(update: UpdateBatches) -> None:
            last = update.first_batch + len(update) - 1
            self.nonfinite.start_update()
            self.stepper.start_group(len(update))
            for index, batch in update.micro_batches():
                self.step = index + 1
                self._should_step = index == last
                loss = self.fit_batch(batch)
                self.avg_train_loss = self.update_average(loss, self.avg_train_loss)
                if finite(loss):
                    metrics.update({"loss": loss}, count=batch_size_of(batch))

        self.run_updates(one_update, stop_when=self._step_limit_reached)
        self._should_step = True
        self.stepper.start_group(1)  # a fit_batch called by hand is an update of its own
        self.avg_train_loss, self.step = 0.0, 0
        result = metrics.result()
        nonfinite = [float(self.nonfinite.losses)]
        result["nonfinite_losses"] = (distrib.all_reduce_sum(nonfinite) if distrib.is_distributed() else nonfinite)[0]
        return result

    def _evaluation_stage(self, loader: Any, stage: Stage) -> dict[str, float]:
        metrics = self.stage_metrics
        for index, batch in self.loader_batches(loader):
            self.step = index + 1
            loss = self.evaluate_batch(batch, stage)
            if finite(loss):
                metrics.update({"loss": loss}, count=batch_size_of(batch))
            if self.debug and self.step >= self.debug_batches:  # type: ignore[attr-defined]
                break
        self.step = 0
        return metrics.result()

    # ----------------------------------------------------------------- checkpoints
    def save_checkpoint(self, *, end_of_epoch: bool) -> None:
        """The engine's saves: mid-epoch ones (`ckpt_interval_*`, stop signals) go to the
        Checkpointer, keeping only the newest; end-of-epoch saves are the recipe's own
        (`save_and_keep_only` in `on_stage_end`), as in SpeechBrain."""
        self.cadence.saved()
        if not end_of_epoch:
            save_unrequested(self, end_of_epoch=False)

    def stop_if_signalled(self) -> None:
        """A stop signal that came during valid: checkpoint at the epoch boundary (the recipe
        may not save there), then stop; a resume starts the next epoch."""
        stop = self.cadence.stop_at_epoch_end()
        if stop is not None and not self.finished:
            save_unrequested(self, end_of_epoch=True)
            raise Interrupted(stop, self.epoch - 1)

    def restore(self) -> bool:
        return False  # a Brain resumes through its Checkpointer, in on_fit_start
