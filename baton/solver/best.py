"""Best states: for each tracked metric, the value and a full-precision copy of the state.

The config's `best_metric` is tracked always (the primary one: `evaluate` and `generate` run
with its state, `baton export` writes it). A solver may track more (`track_best`), so an
evaluation can pick the best by any of them, as SpeechBrain's `min_key` / `max_key` do. When
several metrics improve in the same epoch they share one copy, and a checkpoint stores it once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ..checkpoint import BestState
from ..errors import ConfigError
from ..optim.ema import ModuleEMA
from ..state import StateRegistry, copy_state
from .settings import LoopSettings, MetricSpec

# (registered name, stage) -> its state dict, as the best state should keep it (the EMA weights
# when valid ran with them).
StateOf = Callable[[str, str], Mapping[str, Any]]


class BestStates:
    def __init__(self, primary: MetricSpec) -> None:
        self.primary = primary.name
        self.specs: dict[str, MetricSpec] = {primary.name: primary}
        self.names: list[str] = []  # registered attributes whose state is kept
        self.values: dict[str, float] = {}
        self.states: dict[str, dict[str, Any]] = {}

    def set_primary(self, spec: MetricSpec | None) -> None:
        """Replace the primary metric (None: keep no best state for it)."""
        self.specs.pop(self.primary, None)
        if spec is None:
            self.names.clear()  # nothing to keep a state for
            return
        self.primary = spec.name
        self.specs[spec.name] = spec

    def track(self, spec: MetricSpec) -> None:
        known = self.specs.get(spec.name)
        if known is not None and known != spec:
            raise ConfigError(f"best metric '{spec.name}' is tracked already as {known}; track it once")
        self.specs[spec.name] = spec

    def spec(self, metric: str | None = None) -> MetricSpec:
        """The tracked metric named `metric` (the primary one when None)."""
        name = self.primary if metric is None else metric
        if name not in self.specs:
            raise ConfigError(
                f"no best state is tracked for metric '{name}' (tracked: {', '.join(self.specs)}); "
                f"call track_best('{name}', ...) in build, or pick one of those"
            )
        return self.specs[name]

    def update(self, stage: str, metrics: Mapping[str, float], state_of: StateOf) -> None:
        """After `stage` of an epoch: copy the state for every tracked metric that improved."""
        improved = []
        for spec in self.specs.values():
            if spec.stage != stage:
                continue
            if spec.name not in metrics:
                what = f"best_metric.name='{spec.name}'" if spec.name == self.primary else f"track_best('{spec.name}')"
                raise ConfigError(
                    f"{what} is not a metric of stage '{stage}' "
                    f"(it has: {', '.join(sorted(metrics)) or 'none'}); name one of those"
                )
            value = float(metrics[spec.name])
            if spec.better(value, self.values.get(spec.name)):
                self.values[spec.name] = value
                improved.append(spec.name)
        if improved and self.names:
            shared = {name: copy_state(state_of(name, stage)) for name in self.names}
            for metric in improved:
                self.states[metric] = shared

    def value(self, metric: str | None = None) -> float | None:
        if metric is None and self.primary not in self.specs:
            return None
        return self.values.get(self.spec(metric).name)

    def state(self, metric: str | None = None) -> dict[str, Any]:
        """The kept state for `metric` ({} before its stage first ran, or when none is kept)."""
        if metric is None and self.primary not in self.specs:
            return {}
        return self.states.get(self.spec(metric).name, {})

    def state_dict(self) -> BestState:
        values: dict[str | None, float] = {k: v for k, v in self.values.items()}  # noqa: C416
        states: dict[str | None, dict[str, Any]] = {k: v for k, v in self.states.items()}  # noqa: C416
        return {"primary": self.primary, "values": values, "states": states}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        # A file upgraded from format 1 names its one best metric None: it was the primary.
        rename = {state["primary"]: self.primary}
        self.values = {rename.get(k, k): v for k, v in state["values"].items()}
        self.states = {rename.get(k, k): v for k, v in state["states"].items()}


@contextmanager
def swapped_in(stateful: StateRegistry, states: Mapping[str, Any]) -> Iterator[None]:
    """Run the block with `states` (registered name -> state dict) loaded, then put back the
    live states, also when the block raises."""
    live = {name: copy_state(stateful.get(name).state_dict()) for name in states}
    try:
        for name, state in states.items():
            stateful.get(name).load_state_dict(state)
        yield
    finally:
        for name, state in live.items():
            stateful.get(name).load_state_dict(state)


class BestStateTracking:
    """The solver's best-state methods. Mixed into BaseSolver, whose attributes it uses
    (declared below for readers and type checkers)."""

    best: BestStates
    stateful: StateRegistry
    settings: LoopSettings
    ema: ModuleEMA | None

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


    def _best_candidate(self, name: str, stage: str) -> Any:
        if stage == "valid" and self.ema is not None and name in self.ema.modules:
            return self.ema.averages[name]  # valid ran with the EMA weights: those scored
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
