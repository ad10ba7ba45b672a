"""From the YAML's `networks`, `steps` and `evaluators` to checked, runnable objects.

Everything that can be wrong in such a config is checked here, before any network is built or
any data read, each error one line naming the step and the key:
an unknown `type` (with the known ones), an option a component does not take, an input that
nothing provides, a key written twice, a step training a network not in `networks`, a network
that no step trains and that is not `frozen`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, did_you_mean
from . import registry
from .components import Evaluator, Injector, Loss, as_list, gate

NETWORK_KINDS = ("generator", "discriminator", "frozen")
STEP_KEYS = (
    "training", "optimizer", "optimizer_params", "lr_scheduler", "clip_grad_norm",
    "after", "before", "every", "injectors", "losses",
)
# The fields of baton's AudioBatch, which start every micro-batch's state.
BATCH_KEYS = ("wav", "lengths", "labels")


@dataclass
class NetworkSpec:
    name: str
    kind: str
    factory: Any
    kwargs: dict[str, Any]


@dataclass
class Step:
    """One optimizer's share of an update: its injectors, then its weighted losses."""

    name: str
    trains: list[str]
    injectors: list[Injector]
    losses: list[Loss]
    optimizer: str | None = None
    optimizer_params: dict[str, Any] = field(default_factory=dict)
    lr_scheduler: dict[str, Any] = field(default_factory=dict)
    clip_grad_norm: float | None = None
    after: int | None = None
    before: int | None = None
    every: int | None = None

    def active(self, update: int) -> bool:
        """Whether the step runs at this update: its own gate, and at least one loss on."""
        return gate(update, self.after, self.before, self.every) and any(loss.active(update) for loss in self.losses)

    def outputs(self) -> list[str]:
        return [key for injector in self.injectors for key in injector.outputs]

    @functools.cached_property
    def external_reads(self) -> list[str]:
        """Keys its injectors and losses read that it does not write itself (fixed once built)."""
        own = set(self.outputs())
        reads = [k for i in self.injectors for k in i.inputs] + [k for loss in self.losses for k in loss.reads()]
        return [k for k in dict.fromkeys(reads) if k not in own]


@dataclass
class Graph:
    networks: dict[str, NetworkSpec]
    steps: list[Step]
    evaluators: list[Evaluator]
    writers: dict[str, tuple[Step, Injector]]  # state key -> the injector that writes it

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)


def build_graph(networks: Mapping[str, Any], steps: Mapping[str, Any], evaluators: Mapping[str, Any] | None,
                batch_keys: tuple[str, ...] = BATCH_KEYS) -> Graph:
    """Parse and check the three sections (plain dicts, as `OmegaConf.to_container` gives).

    Raises:
        ConfigError: one line naming the section, step, component and key at fault.
    """
    if not networks:
        raise ConfigError("the extensible solver needs 'networks': {NAME: {type: generator, which_model: ...}}")
    if not steps:
        raise ConfigError("the extensible solver needs 'steps': {NAME: {training: NET, losses: {...}}}")
    specs = {name: _network(name, dict(spec or {})) for name, spec in networks.items()}
    built = [_step(name, dict(spec or {}), specs) for name, spec in steps.items()]
    checked = [_evaluator(name, dict(spec or {})) for name, spec in (evaluators or {}).items()]
    writers = _writers(built, batch_keys)
    _check_reads(built, checked, writers, batch_keys)
    _check_trained(specs, built)
    _check_metric_names(built, checked)
    return Graph(specs, built, checked, writers)


def _network(name: str, spec: dict[str, Any]) -> NetworkSpec:
    where = f"networks.{name}"
    kind = spec.pop("type", None)
    if kind not in NETWORK_KINDS:
        raise ConfigError(f"{where}.type='{kind}': choose one of {', '.join(NETWORK_KINDS)}")
    model, target = spec.pop("which_model", None), spec.pop("_target_", None)
    if (model is None) == (target is None):
        raise ConfigError(f"{where}: give exactly one of 'which_model' (a registered network) or '_target_' (an import path)")
    factory = registry.networks.get(str(model if model is not None else target), where)
    kwargs = {**(spec.pop("kwargs", None) or {}), **spec}
    registry.check_options(factory, kwargs, f"{where} ({model or target})")
    return NetworkSpec(name, kind, factory, kwargs)


def _step(name: str, spec: dict[str, Any], networks: Mapping[str, NetworkSpec]) -> Step:
    where = f"steps.{name}"
    for key in spec:
        if key not in STEP_KEYS:
            hint = did_you_mean(key, STEP_KEYS)
            raise ConfigError(f"{where}: unknown key '{key}'{hint}; a step takes {', '.join(STEP_KEYS)}")
    trains = as_list(spec.get("training"))
    if not trains:
        raise ConfigError(f"{where}.training: name the network(s) this step trains")
    for net in trains:
        if net not in networks:
            raise ConfigError(f"{where}.training: network '{net}' is not in 'networks' (known: {', '.join(networks)})")
        if networks[net].kind == "frozen":
            raise ConfigError(f"{where}.training: network '{net}' is frozen; change its type to train it")
    injectors = [_injector(name, key, dict(v or {})) for key, v in (spec.get("injectors") or {}).items()]
    losses = [_loss(name, key, dict(v or {})) for key, v in (spec.get("losses") or {}).items()]
    if not losses:
        raise ConfigError(f"{where}.losses: a step needs at least one loss")
    components: list[Injector | Loss] = [*injectors, *losses]
    for component in components:
        for net in component.networks():
            if net not in networks:
                raise ConfigError(
                    f"{where} {_label(component)}: network '{net}' is not in 'networks' (known: {', '.join(networks)})"
                )
    every, after, before = (_optional_int(spec.get(k), f"{where}.{k}") for k in ("every", "after", "before"))
    clip = spec.get("clip_grad_norm")
    return Step(
        name, trains, injectors, losses,
        optimizer=spec.get("optimizer"), optimizer_params=dict(spec.get("optimizer_params") or {}),
        lr_scheduler=dict(spec.get("lr_scheduler") or {}),
        clip_grad_norm=None if clip is None else float(clip), after=after, before=before, every=every,
    )


def _injector(step: str, name: str, spec: dict[str, Any]) -> Injector:
    where = f"steps.{step}.injectors.{name}"
    kind = spec.pop("type", None)
    if kind is None:
        raise ConfigError(f"{where}: needs a 'type'; known: {', '.join(registry.injectors.names())}")
    inputs, outputs = as_list(spec.pop("in", None)), as_list(spec.pop("out", None))
    injector: Injector = registry.injectors.build(kind, spec, where, shared=("in", "out"))
    injector.name, injector.inputs, injector.outputs = name, inputs, outputs
    injector.check_io(where)
    return injector


def _loss(step: str, name: str, spec: dict[str, Any]) -> Loss:
    where = f"steps.{step}.losses.{name}"
    kind = spec.pop("type", None)
    if kind is None:
        raise ConfigError(f"{where}: needs a 'type'; known: {', '.join(registry.losses.names())}")
    weight = spec.pop("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise ConfigError(f"{where}.weight={weight!r}: expected a number")
    after, before = (_optional_int(spec.pop(k, None), f"{where}.{k}") for k in ("after", "before"))
    loss: Loss = registry.losses.build(kind, spec, where, shared=("weight", "after", "before"))
    loss.name, loss.weight, loss.after, loss.before = name, float(weight), after, before
    return loss


def _evaluator(name: str, spec: dict[str, Any]) -> Evaluator:
    where = f"evaluators.{name}"
    kind = spec.pop("type", None)
    if kind is None:
        raise ConfigError(f"{where}: needs a 'type'; known: {', '.join(registry.evaluators.names())}")
    every = _optional_int(spec.pop("every", 1), f"{where}.every") or 1
    evaluator: Evaluator = registry.evaluators.build(kind, spec, where, shared=("every",))
    evaluator.name, evaluator.every = name, every
    return evaluator


def _writers(steps: list[Step], batch_keys: tuple[str, ...]) -> dict[str, tuple[Step, Injector]]:
    writers: dict[str, tuple[Step, Injector]] = {}
    for step in steps:
        for injector in step.injectors:
            for key in injector.outputs:
                where = f"steps.{step.name}.injectors.{injector.name}"
                if key in batch_keys:
                    raise ConfigError(f"{where} writes '{key}', a field of the batch; give its output another name")
                if key in writers:
                    other_step, other = writers[key]
                    raise ConfigError(
                        f"{where} writes '{key}', already written by steps.{other_step.name}.injectors.{other.name}; "
                        "give one of them another output name"
                    )
                writers[key] = (step, injector)
    return writers


def _check_reads(steps: list[Step], evaluators: list[Evaluator], writers: Mapping[str, Any], batch_keys: tuple[str, ...]) -> None:
    for step in steps:
        for position, injector in enumerate(step.injectors):
            where = f"steps.{step.name}.injectors.{injector.name}"
            check_provided(injector.inputs, where, writers, batch_keys)
            later = {key: i.name for i in step.injectors[position:] for key in i.outputs}
            for key in injector.inputs:
                if key in later:
                    raise ConfigError(
                        f"{where} reads '{key}', which steps.{step.name}.injectors.{later[key]} writes "
                        "after it; injectors run in the order written: move it before"
                    )
        for loss in step.losses:
            check_provided(loss.reads(), f"steps.{step.name}.losses.{loss.name}", writers, batch_keys)
    for evaluator in evaluators:
        check_provided(evaluator.reads(), f"evaluators.{evaluator.name}", writers, batch_keys)


def check_provided(keys: list[str], where: str, writers: Mapping[str, Any], batch_keys: tuple[str, ...] = BATCH_KEYS) -> None:
    """Raise when one of `keys` is neither a batch field nor any injector's output."""
    known = [*batch_keys, *writers]
    for key in keys:
        if key not in known:
            hint = did_you_mean(key, known)
            raise ConfigError(
                f"{where} reads '{key}', which nothing provides{hint}; the batch gives {', '.join(batch_keys)}, "
                f"injectors write {', '.join(writers) or 'nothing'}"
            )


def _check_trained(networks: Mapping[str, NetworkSpec], steps: list[Step]) -> None:
    trained = {net for step in steps for net in step.trains}
    for name, spec in networks.items():
        if spec.kind != "frozen" and name not in trained:
            raise ConfigError(
                f"networks.{name} ({spec.kind}) is trained by no step; add it to a step's 'training' "
                "or make its type 'frozen'"
            )


def _check_metric_names(steps: list[Step], evaluators: list[Evaluator]) -> None:
    """Loss and evaluator names become metric names, so two of them cannot share one."""
    seen: dict[str, str] = {}
    for step in steps:
        names = [(loss.name, f"steps.{step.name}.losses.{loss.name}") for loss in step.losses]
        names.append((f"{step.name}_loss", f"steps.{step.name} (its total, '{step.name}_loss')"))
        for metric, where in names:
            if metric in seen:
                raise ConfigError(f"{where} and {seen[metric]} both report metric '{metric}'; rename one")
            seen[metric] = where
    for evaluator in evaluators:
        where = f"evaluators.{evaluator.name}"
        if evaluator.name in seen:
            raise ConfigError(f"{where} and {seen[evaluator.name]} both report metric '{evaluator.name}'; rename one")
        seen[evaluator.name] = where


def _optional_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}={value!r}: expected a whole number >= 0, or null")
    return value


def _label(component: Injector | Loss) -> str:
    return f"{'injector' if isinstance(component, Injector) else 'loss'} '{component.name}'"
