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

from ..checkpoint import SavedBest
from ..errors import ConfigError
from ..stateful import StateRegistry, copy_state
from .settings import MetricSpec

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

    def state_dict(self) -> SavedBest:
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
