"""StandardSolver: the AudioCraft-style template.

A task subclasses it and writes five methods:

    build_dataloaders()  self.dataloaders['train' | 'valid' | 'evaluate' | 'generate']
    build_model()        models, optimizers (through make_stepper), register_* calls
    run_step(idx, batch, metrics) -> metrics
                         one batch of train or valid; call `self.stepper.step(loss)` when
                         `self.is_training`
    evaluate() -> metrics
    generate() -> metrics

Train and valid share `common_train_valid`; valid runs with the EMA weights when EMA is on, and
evaluate/generate with the best state. A solver with several optimizers (a GAN) overrides
`train` and passes its own function of one update to `self.run_updates`, which walks the
update's micro-batches once per optimizer. After `run()`, `evaluate_on(name, loader)` evaluates
on more test sets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .loop import BaseSolver, UpdateBatches
from .runtime import batch_size_of
from .stage import Stage


class StandardSolver(BaseSolver):
    folder: Path  # always set: only a Brain may run without a folder

    def build(self) -> None:
        # Data first: LR schedules need the number of updates, which comes from the loaders.
        self.build_dataloaders()
        self.build_model()

    def build_model(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement build_model")

    def build_dataloaders(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement build_dataloaders")

    def run_step(self, idx: int, batch: Any, metrics: dict[str, Any]) -> dict[str, Any]:
        """Process one batch of the train or valid stage and return its metrics."""
        raise NotImplementedError(f"{type(self).__name__} must implement run_step")

    def evaluate(self) -> dict[str, float]:
        raise NotImplementedError(f"{type(self).__name__} must implement evaluate")

    def generate(self) -> dict[str, float]:
        raise NotImplementedError(f"{type(self).__name__} must implement generate")

    def stages(self) -> list[tuple[Stage, Callable[[], dict[str, float]]]]:
        stages: list[tuple[Stage, Callable[[], dict[str, float]]]] = [(Stage.TRAIN, self.train)]
        if "valid" in self.dataloaders:
            stages.append((Stage.VALID, self.valid))
        if self.should_run_every(self.settings.evaluate_every):
            stages.append((Stage.EVALUATE, self._with_best(self.evaluate)))
        if self.should_run_every(self.settings.generate_every):
            stages.append((Stage.GENERATE, self._with_best(self.generate)))
        return stages

    def _with_best(self, stage_fn: Callable[[], dict[str, float]]) -> Callable[[], dict[str, float]]:
        def run() -> dict[str, float]:
            with self.swap_best_state(), self.gathered():
                return stage_fn()

        return run

    def evaluate_on(self, name: str, loader: Any, best: str | None = None) -> dict[str, float]:
        """`evaluate()` on another loader (e.g. another test set), with the best state of metric
        `best` (`best_metric` when None); logged and recorded in the history as `name`."""
        previous = self.dataloaders.get("evaluate")
        self.dataloaders["evaluate"] = loader
        try:
            return self.evaluate_stage(name, self.evaluate, best)
        finally:
            if previous is None:
                del self.dataloaders["evaluate"]
            else:
                self.dataloaders["evaluate"] = previous

    def train(self) -> dict[str, float]:
        return self.common_train_valid(Stage.TRAIN)

    def valid(self) -> dict[str, float]:
        with self.swap_ema_state(), self.gathered():
            return self.common_train_valid(Stage.VALID)

    def common_train_valid(self, stage: Stage | str) -> dict[str, float]:
        """Run `run_step` over the stage's batches and return the rank-averaged metrics.

        `stage` may be a name ('train', 'valid'), as AudioCraft's templates pass it."""
        average = self.stage_metrics
        if Stage.of(stage) is Stage.TRAIN:
            steppers = self.steppers()

            def one_update(update: UpdateBatches) -> None:
                for idx, batch in update.micro_batches(*steppers):
                    average.update(self.run_step(idx, batch, {}), count=batch_size_of(batch))

            self.run_updates(one_update)
        else:
            for idx, batch in self.loader_batches(self.dataloaders["valid"], self.settings.valid_num_samples):
                average.update(self.run_step(idx, batch, {}), count=batch_size_of(batch))
        return average.result()
