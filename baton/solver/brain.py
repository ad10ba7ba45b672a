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

Underneath, the loop is the engine's (`BaseSolver.run_epoch`, `train_updates`,
`loader_batches`): batches come from a resumable stream, updates are counted at their
boundary, stop signals and `ckpt_interval_*` saves happen there, and ranks train one model.
What differs from SpeechBrain, and why:

- The Brain registers itself in the Checkpointer as "brain" with the engine's loop state: data
  position, every rank's RNG, the running stage metrics. A checkpoint taken mid-epoch resumes
  at the next batch, bit for bit, not at the epoch's start with a fresh shuffle.
- Stage losses are means over items (weighted by batch size) and averaged over all ranks; they
  are what `on_stage_end` receives on every rank. `on_stage_end` runs on every rank (not only
  on rank 0), so an LR annealed there stays the same everywhere; the Checkpointer writes on
  rank 0 only.
- A non-finite loss skips its whole update on every rank (no optimizer step with NaN
  gradients) and is counted; `nonfinite_patience + 1` in a row stop training.
- Accumulated losses are divided by the number of batches the update really holds: a short
  last group (`accumulation_remainder=step`, the default) is averaged over what it has.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from .. import distrib
from ..checkpoint import SolverState
from ..data.rng import derive_seed, seed_worker
from ..data.sampler import ResumableSampler
from ..errors import ConfigError, NonFiniteLossError
from ..optim.amp import autocast
from .base import BaseSolver
from .brain_options import PRECISIONS, brain_config, resolve_run_opts, run_opts_from_config
from .runtime import Interrupted, batch_size_of
from .snapshot import solver_state
from .stage import Stage

logger = logging.getLogger("baton.solver")

INTRA_EPOCH_CKPT_FLAG = "brain_intra_epoch_ckpt"  # SpeechBrain's meta key for mid-epoch saves
_LOADER_SALT = 0xB4A1  # the loader generator's seed, apart from the sampler's


class Brain(BaseSolver):
    """SpeechBrain's `Brain`: subclass it and override `compute_forward` and
    `compute_objectives` (and any hook).

    Args:
        modules: name -> module; held in `self.modules` (a ModuleDict) on `self.device`.
        opt_class: called with the modules' parameters to build `self.optimizer`.
        hparams: available as `self.hparams.<name>`; run options missing from `run_opts`
            are looked up here too.
        run_opts: SpeechBrain's run options (see `brain_options.RUN_OPT_DEFAULTS`), e.g. from
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
        self.nonfinite_count = 0  # non-finite losses in a row
        self.nonfinite_losses = 0  # in the running train stage
        self._nonfinite_in_update = False
        self._patience_exhausted = False
        self._should_step = True
        self._group_size = 1
        self._snapshot: SolverState | None = None
        self._restoring = False
        self._loop_recovered = False
        self._epoch_values: list[Any] | None = None
        self._counter: Any = None
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
            self.checkpointer.add_recoverable("brain", self, custom_save_hook=Brain._save, custom_load_hook=Brain._recover)
            if self.scaler.is_enabled():
                self.checkpointer.add_recoverable("scaler", self.scaler, optional_load=True)

    @classmethod
    def from_config(cls, cfg: Any, folder: str | Path | None = None) -> BaseSolver:
        raise NotImplementedError(
            f"{cls.__name__} cannot be built from a config: a Brain run by `baton run` "
            "implements from_config (build modules, hparams, a Checkpointer) and run() "
            "(fit, then evaluate); see baton/tasks/classification.py"
        )

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
        """Called at the end of each stage with its loss averaged over all items of all ranks
        (every rank). The place for `self.checkpointer.save_and_keep_only(meta=...)`."""

    def on_evaluate_start(self, max_key: str | None = None, min_key: str | None = None) -> None:
        """Load the best checkpoint by `max_key`/`min_key` (the newest without either)."""
        if self.checkpointer is not None:
            distrib.barrier()
            key = max_key or min_key
            saved = self.checkpointer.list_checkpoints()
            if key is not None and saved and not any(key in c.meta for c in saved):
                present = sorted({k for c in saved for k in c.meta} - {"unixtime", "end-of-epoch", INTRA_EPOCH_CKPT_FLAG})
                raise ConfigError(
                    f"evaluate: no checkpoint in {self.checkpointer.checkpoints_dir} has '{key}' in its meta "
                    f"(they have: {', '.join(present) or 'none'}); pass one of those, or save it in save_and_keep_only(meta=...)"
                )
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
            scaled = loss / self._group_size if self._group_size != 1 else loss
            self.scaler.scale(scaled).backward()
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
        if bool(torch.isfinite(loss).all()):
            self.nonfinite_count = 0
            return True
        self.nonfinite_count += 1
        self.nonfinite_losses += 1
        self._nonfinite_in_update = True
        if self.nonfinite_count > self.nonfinite_patience:  # type: ignore[attr-defined]
            self._patience_exhausted = True
            if not distrib.is_distributed():
                raise self._nonfinite_error()
        else:
            logger.warning(
                "loss is not finite at epoch %d, batch %d (%d in a row, patience %d): this update is skipped",
                self.epoch, self.step, self.nonfinite_count, self.nonfinite_patience,  # type: ignore[attr-defined]
            )
        return False

    def _nonfinite_error(self) -> NonFiniteLossError:
        return NonFiniteLossError(
            f"loss was not finite for {self.nonfinite_count} batch(es) in a row at epoch {self.epoch}, "
            f"batch {self.step} (nonfinite_patience={self.nonfinite_patience}): training stopped; "  # type: ignore[attr-defined]
            "lower the learning rate, check the data, or run fit() under torch.autograd.detect_anomaly()"
        )

    def check_gradients(self) -> None:
        """Drop non-finite gradients (with a warning), so the optimizers skip those parameters."""
        for name, param in self.modules.named_parameters():
            if param.requires_grad and param.grad is not None and not torch.isfinite(param.grad).all():
                param.grad = None
                logger.warning("gradient of %s is not finite: set to None", name)

    def optimizers_step(self) -> None:
        """Unscale, clip (`max_grad_norm`), step every optimizer `freeze_optimizers` leaves, and
        zero the gradients; an update with a non-finite loss on any rank is skipped."""
        if self._skip_update():
            self.zero_grad(set_to_none=True)
            return
        optimizers = self.freeze_optimizers(self.optimizers_dict)
        for optimizer in optimizers.values():
            self.scaler.unscale_(optimizer)
        if self.max_grad_norm > 0.0:  # type: ignore[attr-defined]
            torch.nn.utils.clip_grad_norm_(list(self.modules.parameters()), self.max_grad_norm)  # type: ignore[attr-defined]
        if not self.scaler.is_enabled() and self.skip_nonfinite_grads:  # type: ignore[attr-defined]
            self.check_gradients()
        for optimizer in optimizers.values():
            self.scaler.step(optimizer)
        self.scaler.update()
        self.zero_grad(set_to_none=True)
        self.optimizer_step += 1

    def _skip_update(self) -> bool:
        flags = [float(self._nonfinite_in_update), float(self._patience_exhausted)]
        if distrib.is_distributed():  # every rank skips (or stops), or none: DDP stays in step
            flags = distrib.all_reduce_max(flags)
        self._nonfinite_in_update = False
        if flags[1]:
            raise self._nonfinite_error()
        return bool(flags[0])

    def zero_grad(self, set_to_none: bool = False) -> None:
        for optimizer in self.freeze_optimizers(self.optimizers_dict).values():
            optimizer.zero_grad(set_to_none)

    @contextlib.contextmanager
    def no_sync(self, use: bool = True) -> Iterator[None]:
        """Hold back DDP's gradient all-reduce (while accumulating). DDP decides in the forward,
        so the context holds the forward and the backward."""
        with contextlib.ExitStack() as stack:
            if use:
                for module in self.modules.values():
                    if isinstance(module, torch.nn.parallel.DistributedDataParallel):
                        stack.enter_context(module.no_sync())
            yield

    def update_average(self, loss: torch.Tensor, avg_loss: float) -> float:
        """SpeechBrain's running mean over the stage's batches (non-finite losses left out)."""
        if torch.isfinite(loss):
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
        kwargs = dict(loader_kwargs)
        if "sampler" in kwargs or "batch_sampler" in kwargs or isinstance(dataset, IterableDataset):
            return DataLoader(dataset, **kwargs)
        shuffle = bool(kwargs.pop("shuffle", False))
        drop_last = bool(kwargs.pop("drop_last", False))
        seed = self.settings.seed
        # Training data is shared out between ranks; valid and test sets are not, as in
        # SpeechBrain: every rank sees all of them, so metrics a recipe gathers itself agree.
        rank, world = (None, None) if Stage.of(stage) is Stage.TRAIN else (0, 1)
        sampler = ResumableSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last, rank=rank, world_size=world)
        kwargs.setdefault("worker_init_fn", seed_worker)
        kwargs.setdefault("generator", torch.Generator().manual_seed(derive_seed(seed, _LOADER_SALT)))
        return DataLoader(dataset, sampler=sampler, drop_last=drop_last, **kwargs)

    def _loader(self, data: Any, stage: Stage, kwargs: Mapping[str, Any]) -> Any:
        if isinstance(data, DataLoader):
            return data
        return self.make_dataloader(data, stage, **kwargs)

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
        self._train_stream = None
        self.epoch, self.history, self.epoch_results, self.train_done = 1, [], {}, 0
        self.stopped_early, self._fit_finished = False, False
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
            epochs = self._epochs_from(epoch_counter)
            for epoch in epochs:
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
        self._fit_finished = self._counter_finished()

    def _epochs_from(self, epoch_counter: Iterable[Any]) -> Iterator[Any]:
        """The counter's epochs from the engine's position (which a recovered checkpoint set).
        An EpochCounter the Checkpointer did not restore is moved there; a range is skipped ahead."""
        self._counter = epoch_counter
        if hasattr(epoch_counter, "current") and hasattr(epoch_counter, "limit"):
            if not self._loop_recovered and epoch_counter.current:  # e.g. a checkpoint SpeechBrain wrote
                self.epoch = int(epoch_counter.current) + 1
            if epoch_counter.current != self.epoch - 1:
                epoch_counter.current = self.epoch - 1
            self._epoch_values = None
            return iter(epoch_counter)
        self._epoch_values = list(epoch_counter)
        return iter(self._epoch_values[self.epoch - 1:])

    @property
    def finished(self) -> bool:
        return self._fit_finished or self._counter_finished()

    def _counter_finished(self) -> bool:
        counter = self._counter
        if self.stopped_early or counter is None:
            return self.stopped_early
        if self._epoch_values is not None:
            return self.epoch - 1 >= len(self._epoch_values)
        return bool(counter.current >= counter.limit or getattr(counter, "should_stop", False))

    def _step_limit_reached(self) -> bool:
        limit = self.optimizer_step_limit  # type: ignore[attr-defined]
        return limit is not None and self.optimizer_step >= int(limit)

    def evaluate(
        self,
        test_set: Any,
        max_key: str | None = None,
        min_key: str | None = None,
        progressbar: bool | None = None,
        test_loader_kwargs: Mapping[str, Any] | None = None,
    ) -> float:
        """Evaluate the best checkpoint (by `max_key`/`min_key`) on `test_set`; returns the
        average test loss. Its metrics join the last epoch's history as 'test'."""
        loader = self._loader(test_set, Stage.TEST, {**(test_loader_kwargs or {}), "ckpt_prefix": None})
        if progressbar is not None:
            self.result_logger.cfg.progress = bool(progressbar)
        self.on_evaluate_start(max_key=max_key, min_key=min_key)
        metrics = self.run_stage(
            Stage.TEST, lambda: self._evaluation_stage(loader, Stage.TEST), name="test",
            epoch=len(self.history) or None,
        )
        if self.history:
            self.history[-1]["test"] = metrics
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
            if not self.train_done:  # a mid-epoch resume keeps the restored counts
                self.nonfinite_count = self.nonfinite_losses = 0
        self.on_stage_start(stage, self._stage_epoch(stage))

    def after_stage(self, stage: Stage, metrics: dict[str, float]) -> None:
        self.stage_results = metrics  # all of the stage's metrics, for on_stage_end
        if stage is not Stage.TEST:
            self.epoch_results[stage.value] = metrics  # what a checkpoint saved in the hook holds
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
        for update in self.train_updates():
            if self._step_limit_reached():
                break
            last = update.first_batch + len(update) - 1
            self._group_size, self._nonfinite_in_update = len(update), False
            for index, batch in update.micro_batches():
                self.step = index + 1
                self._should_step = index == last
                loss = self.fit_batch(batch)
                self.avg_train_loss = self.update_average(loss, self.avg_train_loss)
                if torch.isfinite(loss).all():
                    metrics.update({"loss": loss}, count=batch_size_of(batch))
        self._group_size, self._should_step = 1, True
        self.avg_train_loss, self.step = 0.0, 0
        result = metrics.result()
        nonfinite = [float(self.nonfinite_losses)]
        result["nonfinite_losses"] = (distrib.all_reduce_sum(nonfinite) if distrib.is_distributed() else nonfinite)[0]
        return result

    def _evaluation_stage(self, loader: Any, stage: Stage) -> dict[str, float]:
        metrics = self.stage_metrics
        for index, batch in self.loader_batches(loader):
            self.step = index + 1
            loss = self.evaluate_batch(batch, stage)
            if torch.isfinite(loss).all():
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
            self._save_own_checkpoint(end_of_epoch=False)

    def _save_own_checkpoint(self, *, end_of_epoch: bool) -> None:
        """A checkpoint the recipe did not ask for (mid-epoch, or a stop at an epoch's end):
        flagged in its meta, and only the newest such one is kept."""
        if self.checkpointer is None:
            return
        self._snapshot = self.state_dict()  # collective; the Checkpointer writes on rank 0
        try:
            self.checkpointer.save_and_keep_only(
                end_of_epoch=end_of_epoch, num_to_keep=1, meta={INTRA_EPOCH_CKPT_FLAG: True},
                ckpt_predicate=lambda ckpt: INTRA_EPOCH_CKPT_FLAG in ckpt.meta,
                verbosity=logging.DEBUG,
            )
        finally:
            self._snapshot = None

    def stop_if_signalled(self) -> None:
        """A stop signal that came during valid: checkpoint at the epoch boundary (the recipe
        may not save there), then stop; a resume starts the next epoch."""
        stop = self.cadence.stop_at_epoch_end()
        if stop is not None and not self.finished:
            self._save_own_checkpoint(end_of_epoch=True)
            raise Interrupted(stop, self.epoch - 1)

    def restore(self) -> bool:
        return False  # a Brain resumes through its Checkpointer, in on_fit_start

    def _save(self, path: Path) -> None:
        # The Checkpointer calls this on rank 0 only: outside the engine's hooks (a recipe's own
        # save_checkpoint after evaluate) the other ranks are not there to gather with.
        state = self._snapshot if self._snapshot is not None else solver_state(self, collective=not distrib.is_distributed())
        brain = {
            "step": self.step, "avg_train_loss": self.avg_train_loss,
            "optimizer_step": self.optimizer_step, "nonfinite_count": self.nonfinite_count,
            "nonfinite_losses": self.nonfinite_losses,
        }
        torch.save({"engine": state, "brain": brain}, path)

    def _recover(self, path: Path, end_of_epoch: bool) -> None:
        """Put the loop back where the checkpoint was taken. Only when fit resumes: evaluate()
        loads a best checkpoint for its weights, and the loop's record stays as it is."""
        if not self._restoring:
            return
        import zipfile

        from ..checkpoint import load_file

        if not zipfile.is_zipfile(path):  # SpeechBrain's own brain.ckpt: a few YAML counters
            logger.warning(
                "%s was written by SpeechBrain: it holds no data position or RNG state, so training "
                "resumes at the epoch its EpochCounter recorded, not bit for bit", path,
            )
            return
        data = load_file(Path(path), trusted=self.settings.trusted_checkpoints)
        self.load_state_dict(data["engine"])
        self._loop_recovered = True
        brain = data["brain"]
        self.avg_train_loss = brain["avg_train_loss"]
        self.optimizer_step = brain["optimizer_step"]
        self.nonfinite_count = brain["nonfinite_count"]
        self.nonfinite_losses = brain.get("nonfinite_losses", 0)
        if end_of_epoch and self.epoch_results:  # saved in on_stage_end: that epoch is whole
            self.history.append({k: v for k, v in self.epoch_results.items() if v})
            self.epoch += 1
            self.epoch_results, self.train_done = {}, 0
        self.result_logger.write_history(self.history)
        where = f"update {self.train_done} of epoch {self.epoch}" if self.train_done else f"the start of epoch {self.epoch}"
        logger.info("resuming from %s at %s", path.parent if isinstance(path, Path) else path, where)

