"""BaseSolver: the epoch loop, stage scheduling, state, checkpoints and logging.

The loop, top to bottom (`run`):

    restore the XP's checkpoint, if any
    for each epoch until optim.epochs:
        train      optim.updates_per_epoch updates, or one full pass when it is null
        valid      with the EMA weights when EMA is on
        evaluate   every evaluate.every epochs and at the last one, with the best state
        generate   every generate.every epochs and at the last one, with the best state
        commit     history, best state, checkpoint

Subclasses provide the stages (StandardSolver today; the Brain and config-driven solvers are
to be built on this same loop). Everything that shapes the
future of training is in the checkpoint, including RNG states and the position in the data,
so an XP killed at any update and run again ends with the same weights as one never stopped.
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
from ..data.stream import BatchStream
from ..errors import ConfigError
from ..logging import ResultLogger
from ..metrics.averager import Averager
from ..optim.amp import autocast, make_grad_scaler
from ..optim.ema import ModuleEMA
from ..optim.stepper import GradientStepper
from ..state import (
    StateRegistry,
    capture_rng,
    copy_state,
    restore_rng,
    seed_everything,
    unwrap,
)
from .runtime import (
    Interrupted,
    StopSignal,
    apply_torch_settings,
    batch_size_of,
    check_loop_config,
    resolve_device,
    to_device,
)
from .stage import Stage

logger = logging.getLogger("baton.solver")

# Under DDP, updates between agreements on stop signals and timed checkpoints (see _stop_or_save).
AGREE_EVERY = 10


class BaseSolver:
    """Owns one training job: its config, folder, state and loop.

    Args:
        cfg: the resolved config (see conf/solver/default.yaml for the shared keys).
        folder: the XP folder; defaults to `cfg.xp.folder`, which `baton.config.compose` fills.
    """

    def __init__(self, cfg: Any, folder: str | Path | None = None) -> None:
        self.cfg = cfg
        folder = folder if folder is not None else cfg.xp.folder
        if folder is None:
            raise ConfigError(
                "the solver has no XP folder: pass folder=... or build the config with "
                "baton.config.compose, which sets xp.folder"
            )
        self.folder = Path(folder)
        self.sig: str | None = cfg.xp.sig
        self.device = resolve_device(str(cfg.device))
        check_loop_config(cfg)
        apply_torch_settings(cfg)
        seed_everything(int(cfg.seed))
        self.result_logger = ResultLogger(self.folder, cfg.logging)
        ckpt = cfg.checkpoint
        self.checkpoints = CheckpointManager(
            self.folder,
            self.sig,
            keep_last=int(ckpt.keep_last),
            keep_every=ckpt.keep_every,
            async_save=bool(ckpt.async_save),
        )
        self.scaler = make_grad_scaler(bool(cfg.autocast), str(cfg.autocast_dtype), self.device)
        # Read once: OmegaConf attribute access costs microseconds, too much for every update.
        self._autocast = (bool(cfg.autocast), str(cfg.autocast_dtype))
        self._ema_every = int(cfg.optim.ema.every)
        self._save_every_updates = int(ckpt.every_updates or 0) if ckpt.save else 0
        self._save_every_seconds = float(ckpt.every_seconds or 0) if ckpt.save else 0.0
        self.stateful = StateRegistry(self)
        self.dataloaders: dict[str, Any] = {}
        self.history: list[dict[str, dict[str, float]]] = []
        self.epoch = 1
        self.update = 0
        self.stage: Stage | None = None
        self.best_value: float | None = None
        self.best_state: dict[str, Any] = {}
        self.ema: ModuleEMA | None = None
        self._best_names: list[str] = []
        self._epoch_results: dict[str, dict[str, float]] = {}
        self._train_done = 0
        self._stage_metrics = Averager()
        self._restored_stage_metrics: list[dict[str, Any]] | None = None
        self._train_stream: BatchStream | None = None
        self._last_save = time.monotonic()
        self._stop = StopSignal()
        self._profiler: Any = None
        self._profiled_updates = 0
        try:
            self.build()
        except BaseException:
            self.result_logger.close()  # no handler left writing into this XP's log
            raise
        # Built from the shared seed (the same initial weights everywhere); trained from one
        # stream per rank, so ranks do not draw the same dropout masks.
        seed_everything(derive_seed(int(cfg.seed), distrib.rank()))
        if cfg.compile:
            for name in self._modules():
                self.stateful.get(name).compile()

    # ----------------------------------------------------------------- to override
    def build(self) -> None:
        """Build models, optimizers and dataloaders, and register what is checkpointed."""
        raise NotImplementedError

    def stages(self) -> list[tuple[Stage, Callable[[], dict[str, float]]]]:
        """The stages of the current epoch, in order, each with the function that runs it."""
        raise NotImplementedError

    def on_stage_start(self, stage: Stage) -> None:
        """Hook called before each stage."""

    def on_stage_end(self, stage: Stage, metrics: dict[str, float]) -> None:
        """Hook called after each stage with its (rank-averaged) metrics."""

    # ----------------------------------------------------------------- registration
    def register_stateful(self, *names: str) -> None:
        """Checkpoint these attributes (modules, optimizers, steppers, plain values)."""
        self.stateful.register(*names)

    def register_best(self, *names: str) -> None:
        """Keep the state of these registered attributes at the best `best_metric`."""
        for name in names:
            if name not in self.stateful:
                raise ValueError(f"register_best('{name}'): register_stateful('{name}') first")
        self._best_names.extend(names)

    def register_ema(self, *names: str) -> None:
        """Average the weights of these modules when `optim.ema.use` is true (else a no-op)."""
        ema_cfg = self.cfg.optim.ema
        if not ema_cfg.use:
            return
        modules = {name: unwrap(getattr(self, name)) for name in names}
        self.ema = ModuleEMA(modules, float(ema_cfg.decay), ema_cfg.device)

    # ----------------------------------------------------------------- conveniences
    @property
    def is_training(self) -> bool:
        return self.stage is Stage.TRAIN

    def autocast(self) -> Any:
        """Context for forward passes: mixed precision when `autocast` is on."""
        return autocast(*self._autocast, self.device)

    def to_device(self, batch: Any) -> Any:
        return to_device(batch, self.device)

    def make_stepper(self, optimizer: torch.optim.Optimizer, scheduler: Any = None, *modules: nn.Module) -> GradientStepper:
        """A GradientStepper using this solver's clipping and AMP scaler."""
        max_norm = self.cfg.optim.max_norm
        return GradientStepper(
            optimizer,
            scheduler,
            modules=modules,
            max_norm=None if max_norm is None else float(max_norm),
            scaler=self.scaler,
        )

    @property
    def total_updates(self) -> int:
        """Updates in the whole run, for LR schedules."""
        return int(self.cfg.optim.epochs) * self.updates_per_epoch()

    def _modules(self) -> dict[str, nn.Module]:
        """Registered modules as assigned (a DDP wrapper stays wrapped: train/eval go through it)."""
        return {n: v for n in self.stateful if isinstance(v := getattr(self, n), nn.Module)}

    def _steppers(self) -> list[GradientStepper]:
        return [v for n in self.stateful if isinstance(v := self.stateful.get(n), GradientStepper)]

    # ----------------------------------------------------------------- the loop
    def run(self) -> list[dict[str, dict[str, float]]]:
        """Train to `optim.epochs`, resuming from the XP folder's checkpoint. Returns the history."""
        self._stop.install()
        try:
            self.restore()
            while self.epoch <= int(self.cfg.optim.epochs):
                self.run_epoch()
                self.commit()
                stop = self._stop.received  # came during valid/evaluate/generate
                if distrib.is_distributed():
                    stop = int(distrib.all_reduce_max([float(stop or 0)])[0]) or None
                if stop is not None:
                    self.checkpoints.wait()
                    raise Interrupted(stop)
        except Interrupted as stop:
            saved = "checkpoint saved; run again to resume" if self.cfg.checkpoint.save else "checkpoint.save=false: nothing saved"
            logger.info("stopped by signal %d during epoch %d, %s", stop.signum, self.epoch, saved)
            raise
        finally:
            self._stop.uninstall()
            self.checkpoints.wait()
            if self._profiler is not None:
                self._profiler.stop()
                self._profiler = None
            # Another XP run in this process (grid, notebook) must not log into this one's files.
            self.result_logger.close()
        return self.history

    def run_epoch(self) -> None:
        for stage, run_stage in self.stages():
            if stage.value in self._epoch_results:  # done before a mid-epoch restart
                continue
            metrics = self.run_stage(stage, run_stage)
            self._epoch_results[stage.value] = metrics
            if stage.value == self.cfg.best_metric.stage:
                self._update_best(metrics)

    def run_stage(self, stage: Stage, run_stage: Callable[[], dict[str, float]]) -> dict[str, float]:
        self.stage = stage
        for module in self._modules().values():
            module.train(stage is Stage.TRAIN)
        self._stage_metrics = Averager()
        if self._restored_stage_metrics is not None and stage is Stage.TRAIN:
            self._stage_metrics = Averager.from_rank_states(self._restored_stage_metrics)
            self._restored_stage_metrics = None
        self.on_stage_start(stage)
        start = time.monotonic()
        with torch.set_grad_enabled(stage is Stage.TRAIN):
            metrics = run_stage()
        self.on_stage_end(stage, metrics)
        self.stage = None
        self.result_logger.log_summary(stage.value, self.epoch, metrics)
        logger.debug("%s took %.1fs", stage.value, time.monotonic() - start)
        return metrics

    def should_run_every(self, every: int | None) -> bool:
        """True for stages that run every N epochs, and always at the last epoch."""
        if self.epoch == int(self.cfg.optim.epochs):
            return True
        return every is not None and every > 0 and self.epoch % int(every) == 0

    def commit(self) -> None:
        """End an epoch: history, checkpoint, then history.jsonl (never ahead of the checkpoint)."""
        self.history.append({k: v for k, v in self._epoch_results.items() if v})
        self._epoch_results = {}
        self._train_done = 0
        self.epoch += 1
        self.save_checkpoint(end_of_epoch=True)
        self.result_logger.write_history(self.history)

    # ----------------------------------------------------------------- batches
    def updates_per_epoch(self, batches: int | None = None) -> int:
        """Updates in one epoch; `batches` (one full pass, per rank) when the caller knows it."""
        configured = self.cfg.optim.updates_per_epoch
        if configured is not None:
            return int(configured)
        if batches is None:
            batches = len(self._train_batches_stream())
        groups, remainder = divmod(batches, self._accumulation())
        keep_short = remainder and self.cfg.optim.accumulation_remainder == "step"
        updates = groups + (1 if keep_short else 0)
        if updates == 0:
            raise ConfigError(
                f"an epoch has no update: {batches} training batch(es) per rank for "
                f"optim.grad_accumulation={self._accumulation()}; lower dataset.batch_size or "
                "the accumulation, or add data"
            )
        return updates

    def _accumulation(self) -> int:
        return int(self.cfg.optim.grad_accumulation)

    def _train_batches_stream(self) -> BatchStream:
        if self._train_stream is None:
            if "train" not in self.dataloaders:
                raise ConfigError("the solver has no 'train' dataloader; set self.dataloaders['train'] in build")
            self._train_stream = BatchStream(self.dataloaders["train"], seed=int(self.cfg.seed))
        return self._train_stream

    def train_batches(self) -> Iterator[tuple[int, Any]]:
        """This epoch's training batches, grouped into updates of `optim.grad_accumulation`.

        Between updates (that is, when the caller asks for the next batch) it counts the
        update, steps the EMA, and saves a mid-epoch checkpoint when one is due or a stop
        signal came. A full pass whose length is not a multiple of the accumulation ends with
        a short group when `optim.accumulation_remainder=step`, or drops those batches.
        """
        stream = self._train_batches_stream()
        accumulation = self._accumulation()
        full_pass = self.cfg.optim.updates_per_epoch is None
        num_batches = len(stream) if full_pass else None
        num_updates = self.updates_per_epoch(num_batches)
        progress = self.result_logger.progress(
            f"Train {self.epoch}", num_updates, self._stage_metrics.local, start=self._train_done
        )
        self._start_profiler()
        steppers = self._steppers()
        ddp_steppers = [stepper for stepper in steppers if stepper.wraps_ddp]
        try:
            for update in range(self._train_done, num_updates):
                size = accumulation
                if num_batches is not None:
                    size = min(accumulation, num_batches - update * accumulation)
                for stepper in steppers:
                    stepper.start_group(size)
                for micro in range(size):
                    batch = stream.next()
                    if size == 1 or not ddp_steppers:
                        yield update * accumulation + micro, batch
                        continue
                    # The caller's forward and backward run inside these contexts (the generator
                    # is suspended within them), which DDP's no_sync needs.
                    with contextlib.ExitStack() as accumulating:
                        for stepper in ddp_steppers:
                            accumulating.enter_context(stepper.micro_batch())
                        yield update * accumulation + micro, batch
                self._after_update()
                progress.advance()
        finally:
            progress.close()
        if full_pass:
            stream.next_epoch()
        # No checkpoint is written between here and commit, so the count can be reset now.
        self._train_done = 0

    def _after_update(self) -> None:
        self._train_done += 1
        self.update += 1
        if self.ema is not None and self.update % self._ema_every == 0:
            self.ema.update()
        if self._profiler is not None:
            self._profiler.step()
            self._profiled_updates += 1
            spec = self.cfg.profiler
            if self._profiled_updates >= int(spec.wait) + int(spec.warmup) + int(spec.active):
                self._profiler.stop()  # the trace handler has written the active window
                self._profiler = None
        stop, save = self._stop_or_save()
        if stop is not None:
            self.save_checkpoint(end_of_epoch=False)
            self.checkpoints.wait()
            raise Interrupted(stop)
        if save:
            self.save_checkpoint(end_of_epoch=False)

    def _stop_or_save(self) -> tuple[int | None, bool]:
        """After an update: the stop signal to obey (or None), and whether to save now.

        Every rank must decide alike, or one would save or stop alone while the others wait in a
        collective. Saves every N updates agree by construction; a signal or a timed save is
        agreed every AGREE_EVERY updates under DDP (an all-reduce per update would cost a
        device sync per update).
        """
        save = bool(self._save_every_updates) and self.update % self._save_every_updates == 0
        timed = bool(self._save_every_seconds) and (
            time.monotonic() - self._last_save >= self._save_every_seconds
        )
        signal_number = self._stop.received
        if distrib.is_distributed():
            if self.update % AGREE_EVERY:
                return None, save
            got, due = distrib.all_reduce_max([float(signal_number or 0), float(timed)])
            signal_number, timed = (int(got) or None), due > 0
        return signal_number, save or timed

    def _start_profiler(self) -> None:
        """Profile a few updates of the first train stage of this process (`profiler.*`)."""
        spec = self.cfg.profiler
        if not spec.enabled or self._profiled_updates or self._profiler is not None:
            return
        from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

        activities = [ProfilerActivity.CPU]
        if self.device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        self._profiler = profile(
            activities=activities,
            schedule=schedule(wait=int(spec.wait), warmup=int(spec.warmup), active=int(spec.active)),
            on_trace_ready=tensorboard_trace_handler(str(self.folder / "profiler")),
        )
        self._profiler.start()
        logger.info("profiling %d updates into %s", int(spec.active), self.folder / "profiler")

    def loader_batches(self, loader: Any, max_items: int | None = None) -> Iterator[tuple[int, Any]]:
        """One deterministic pass over an evaluation loader (valid, evaluate), stopping after the
        batch that reaches `max_items` items over all ranks."""
        if hasattr(loader.dataset, "set_epoch"):
            loader.dataset.set_epoch(0)
        sampler: Any = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(0)
        if getattr(loader, "generator", None) is not None:
            loader.generator.manual_seed(int(self.cfg.seed))
        # The cap is global: each rank takes its share, and stops after the batch that reaches it.
        cap = None if max_items is None else -(-int(max_items) // distrib.world_size())
        seen = 0
        total = len(loader) if hasattr(loader, "__len__") else None
        progress = self.result_logger.progress(
            f"{self.stage.value.capitalize() if self.stage else 'Eval'} {self.epoch}",
            total,
            self._stage_metrics.local,
        )
        try:
            for idx, batch in enumerate(loader):
                yield idx, batch
                progress.advance()
                seen += batch_size_of(batch)
                if cap is not None and seen >= cap:
                    break
        finally:
            progress.close()

    # ----------------------------------------------------------------- best state and EMA
    def _update_best(self, metrics: dict[str, float]) -> None:
        spec = self.cfg.best_metric
        if spec.name not in metrics:
            raise ConfigError(
                f"best_metric.name='{spec.name}' is not a metric of stage '{spec.stage}' "
                f"(it has: {', '.join(sorted(metrics)) or 'none'}); set best_metric.name"
            )
        value = float(metrics[spec.name])
        better = (
            self.best_value is None
            or (spec.direction == "min" and value < self.best_value)
            or (spec.direction == "max" and value > self.best_value)
        )
        if not better:
            return
        self.best_value = value
        self.best_state = {}
        for name in self._best_names:
            if self.ema is not None and name in self.ema.modules:
                # Valid ran with the EMA weights, so those are the weights that scored best.
                self.best_state[name] = copy_state(self.ema.averages[name])
            else:
                self.best_state[name] = copy_state(self.stateful.get(name).state_dict())

    @contextmanager
    def swap_best_state(self) -> Iterator[None]:
        """Run the block with the best state loaded, then restore the live one."""
        if not self.best_state:
            yield
            return
        live = {name: copy_state(self.stateful.get(name).state_dict()) for name in self.best_state}
        try:
            for name, state in self.best_state.items():
                self.stateful.get(name).load_state_dict(state)
            yield
        finally:
            for name, state in live.items():
                self.stateful.get(name).load_state_dict(state)

    @contextmanager
    def swap_ema_state(self) -> Iterator[None]:
        if self.ema is None:
            yield
            return
        with self.ema.swapped():
            yield

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        stream = self._train_stream.state_dict() if self._train_stream is not None else None
        return {
            "registered": self.stateful.state_dict(),
            "modules": list(self._modules()),
            "best_state": self.best_state,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "loop": {
                "epoch": self.epoch,
                "update": self.update,
                "history": self.history,
                "best_value": self.best_value,
                "epoch_results": self._epoch_results,
                "train_done": self._train_done,
                "stage_metrics": self._stage_metrics.rank_states() if self._train_done else None,
                "train_stream": stream,
                "rng": distrib.all_gather_object(capture_rng()),  # every rank's stream
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stateful.load_state_dict(state["registered"])
        self.best_state = state["best_state"]
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        loop = state["loop"]
        self.epoch = loop["epoch"]
        self.update = loop["update"]
        self.history = loop["history"]
        self.best_value = loop["best_value"]
        self._epoch_results = loop["epoch_results"]
        self._train_done = loop["train_done"]
        self._restored_stage_metrics = loop["stage_metrics"]  # every rank's, see Averager
        if loop["train_stream"] is not None:
            self._train_batches_stream().load_state_dict(loop["train_stream"])
        streams = loop["rng"]
        if len(streams) == distrib.world_size():
            restore_rng(streams[distrib.rank()])
        else:
            logger.warning(
                "checkpoint from %d rank(s), running on %d: training RNG reseeded, so this resume "
                "is not bit-exact", len(streams), distrib.world_size(),
            )
            seed_everything(derive_seed(int(self.cfg.seed), distrib.rank(), self.update))

    def save_checkpoint(self, *, end_of_epoch: bool) -> None:
        """Collective when distributed (the stage metrics are reduced); rank 0 writes."""
        self._last_save = time.monotonic()
        if not self.cfg.checkpoint.save:
            return
        state = self.state_dict()
        if distrib.is_rank_zero():
            self.checkpoints.save(state, self.epoch - 1, end_of_epoch=end_of_epoch)

    def restore(self) -> bool:
        """Load the XP's newest usable checkpoint. Returns False when starting afresh."""
        self.checkpoints.remove_stale_temporaries()
        data = self.checkpoints.load()
        if data is None:
            return False
        self.load_state_dict(data["state"])
        self.result_logger.write_history(self.history)
        where = f"update {self._train_done} of epoch {self.epoch}" if self._train_done else f"epoch {self.epoch}"
        logger.info("resuming %s from %s", self.folder, where)
        return True
