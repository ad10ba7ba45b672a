"""ExtensibleSolver: training described as data flow in YAML (DL-Art-School's vocabulary).

    networks:   {NAME: {type: generator | discriminator | frozen, which_model | _target_, kwargs}}
    steps:      {NAME: {training, optimizer, optimizer_params, lr_scheduler, clip_grad_norm,
                        after, before, every, injectors: {...}, losses: {...}}}
    evaluators: {NAME: {type, every, ...}}
    generate:   {audio: [state keys written as WAVs], num_samples (default 8)}

One update, top to bottom (`train`):

    states = the update's micro-batches, each as a dict of its fields (wav, lengths, labels)
    for each step active at this update, in the order written:
        for each micro-batch (DDP in no_sync but for the last):
            injectors write new keys into that micro-batch's state
            loss = sum(weight * loss for the step's active losses); backward
        the step's optimizer steps (its own scaler, clipping, scheduler)
        every state tensor is detached: the next step sees values, not graphs

Networks a step does not train have `requires_grad` off while it runs, so a generator's
adversarial loss leaves no gradient in the discriminator, and are called without their DDP
wrapper. A key that a step reads but that an inactive step writes (a discriminator step
running while the generator's is gated off) is computed on demand, without autograd.
Valid runs every step's injectors and losses without gradient, then the evaluators; their
metrics join the valid stage's. See docs/steps.md.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from .. import distrib
from ..data.builders import split_loaders
from ..data.collate import AudioBatch
from ..data.rng import derive_seed
from ..errors import ConfigError
from ..optim import build_lr_scheduler, build_optimizer
from ..optim.stepper import GradientStepper
from ..steps.components import State, StepContext
from ..steps.graph import BATCH_KEYS, Graph, Step, build_graph, check_provided
from .loop import UpdateBatches
from .registry import register_solver
from .runtime import batch_size_of, per_rank_batch_size
from .samples import SampleWriter
from .standard import StandardSolver

logger = logging.getLogger("baton.solver")
SPLITS = ("train", "valid", "evaluate", "generate")
DEFAULT_SAMPLES = 8  # items `generate` writes when generate.num_samples is not set
# The `optim` keys a step may override in its `optimizer_params`.
OPTIMIZER_PARAMS = ("lr", "betas", "eps", "momentum", "weight_decay", "decay_norms_and_biases")


class Networks(nn.Module):
    """The config's networks by name, always the plain modules: checkpoints and the best state
    hold plain keys (`generator.pre.bias`) whether or not DDP wraps them in training."""

    def __init__(self, modules: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.named = nn.ModuleDict(modules)

    def __getitem__(self, name: str) -> nn.Module:
        return self.named[name]

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return {name: module.state_dict() for name, module in self.named.items()}

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:  # type: ignore[override]
        missing = [name for name in self.named if name not in state]
        if strict and missing:
            raise KeyError(f"checkpoint lacks network(s) {missing}")
        for name, module in self.named.items():
            if name in state:
                module.load_state_dict(state[name], strict=strict)


class Optimizers(dict[str, GradientStepper]):
    """Each step's stepper (optimizer, scheduler, GradScaler) by step name, as one checkpoint entry."""

    def state_dict(self) -> dict[str, Any]:
        return {name: stepper.state_dict() for name, stepper in self.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, stepper in self.items():
            if name not in state:
                raise KeyError(f"checkpoint lacks the optimizer of step '{name}'")
            stepper.load_state_dict(state[name])


@register_solver("extensible")
class ExtensibleSolver(StandardSolver):
    graph: Graph
    networks: Networks
    optimizers: Optimizers
    # The fields every micro-batch's state starts with: baton's AudioBatch. A subclass whose
    # loaders give dicts names their keys here, so the config's reads are checked against them.
    batch_keys: tuple[str, ...] = BATCH_KEYS

    # ----------------------------------------------------------------- build
    def build_dataloaders(self) -> None:
        data = self.cfg.dataset
        splits = [s for s in SPLITS if s in data and data[s] is not None]
        batch_size = per_rank_batch_size(int(data.batch_size))
        self.dataloaders.update(split_loaders(data, splits, seed=int(self.cfg.seed), batch_size=batch_size))

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """The loop keys, and the networks / steps / evaluators graph."""
        super().check_config(cfg)
        cls.graph_from_config(cfg)

    @classmethod
    def graph_from_config(cls, cfg: Any) -> Graph:
        """The config's networks, steps and evaluators, parsed and checked."""
        sections = {key: OmegaConf.to_container(cfg.get(key), resolve=True) if cfg.get(key) is not None else None
                    for key in ("networks", "steps", "evaluators")}
        return build_graph(
            sections["networks"] or {}, sections["steps"] or {}, sections["evaluators"], cls.fields_of(cfg),  # type: ignore[arg-type]
        )

    @classmethod
    def fields_of(cls, cfg: Any) -> tuple[str, ...]:
        """What a batch gives the steps: `batch_keys`, and a paired dataset's `dataset.streams`."""
        return (*cls.batch_keys, *(cfg.dataset.get("streams") or []))

    @classmethod
    def build_model_from_config(cls, cfg: Any, graph: Graph | None = None) -> Networks:
        """Every network of the config, by name (`baton.load_model(SIG)["generator"]`);
        `graph` when the caller has already parsed the config."""
        modules = {}
        graph = graph if graph is not None else cls.graph_from_config(cfg)
        for name, spec in graph.networks.items():
            module = spec.factory(**spec.kwargs)
            if spec.kind == "frozen":
                module.eval().requires_grad_(False)
            modules[name] = module
        return Networks(modules)

    def build_model(self) -> None:
        cfg = self.cfg
        self.graph = self.graph_from_config(cfg)
        check_provided(list(cfg.generate.get("audio") or []), "generate.audio", self.graph.writers, self.fields_of(cfg))
        best = self.settings.best_metric
        for evaluator in self.graph.evaluators:
            if evaluator.every > 1 and best.stage == "valid" and best.name == evaluator.name:
                raise ConfigError(
                    f"best_metric.name='{evaluator.name}' is evaluators.{evaluator.name}, which runs every "
                    f"{evaluator.every} epochs: the best state needs it every epoch; set its every to 1"
                )
        self.sample_rate = int(cfg.dataset.sample_rate)
        self.networks = self.build_model_from_config(cfg, self.graph).to(self.device)
        modules = dict(self.networks.named.items())
        # What each network is called through in training: its DDP wrapper once `prepare` wraps it.
        self._callable: dict[str, nn.Module] = dict(modules)
        self.optimizers = Optimizers((step.name, self._stepper(step)) for step in self.graph.steps)
        self.register_stateful("networks", "optimizers")
        self.register_best("networks")
        generators = [n for n, s in self.graph.networks.items() if s.kind == "generator"]
        self._register_network_ema(generators)
        for name, module in modules.items():
            params = sum(p.numel() for p in module.parameters())
            logger.info("network %s (%s): %.3fM parameters", name, self.graph.networks[name].kind, params / 1e6)

    def _stepper(self, step: Step) -> GradientStepper:
        """The step's optimizer over its networks: `optim` keys, overridden by the step's
        `optimizer` and `optimizer_params`; its schedule: `schedule` keys, overridden by its
        `lr_scheduler`."""
        params = dict(step.optimizer_params)
        if "beta1" in params or "beta2" in params:  # DLAS spells Adam's betas this way
            betas = list(self.cfg.optim.betas)
            params["betas"] = [params.pop("beta1", betas[0]), params.pop("beta2", betas[1])]
        for key in params:
            if key not in OPTIMIZER_PARAMS:
                raise ConfigError(
                    f"steps.{step.name}.optimizer_params.{key} is not an optimizer setting; it takes "
                    f"{', '.join(OPTIMIZER_PARAMS)}, beta1, beta2"
                )
        optim_cfg = _merged(self.cfg.optim, {"optimizer": step.optimizer, **params}, f"steps.{step.name}.optimizer_params")
        schedule_cfg = _merged(self.cfg.schedule, step.lr_scheduler, f"steps.{step.name}.lr_scheduler")
        modules = [self.networks[name] for name in step.trains]
        optimizer = build_optimizer(modules, optim_cfg)
        scheduler = build_lr_scheduler(optimizer, schedule_cfg, self.total_updates)
        max_norm = self.settings.max_norm if step.clip_grad_norm is None else step.clip_grad_norm
        return self.make_stepper(optimizer, scheduler, *modules, max_norm=max_norm, name=step.name)

    def _register_network_ema(self, names: list[str]) -> None:
        """EMA (optim.ema.use) of the generator networks' weights, used by valid and kept as
        their part of the best state."""
        if not self.settings.ema_use or not names:
            return
        from ..optim.ema import ModuleEMA

        self.ema = ModuleEMA({}, self.settings.ema_decay, self.settings.ema_device)
        for name in names:
            self.ema.add(f"networks.{name}", self.networks[name])

    def best_candidate(self, name: str, stage: str) -> Any:
        if name != "networks" or stage != "valid" or self.ema is None:
            return super().best_candidate(name, stage)
        state = self.networks.state_dict()
        for key, averages in self.ema.averages.items():  # valid scored the EMA weights
            state[key.split(".", 1)[1]] = averages
        return state

    # ----------------------------------------------------------------- engine hooks
    def registered_modules(self) -> dict[str, nn.Module]:
        """The networks that train (frozen ones stay in eval mode and out of DDP)."""
        return {n: self._callable[n] for n, s in self.graph.networks.items() if s.kind != "frozen"}

    def replace_module(self, name: str, module: nn.Module) -> None:
        self._callable[name] = module

    def module_state_names(self) -> list[str]:
        return ["networks"]  # every network's weights, by name, in one registered entry

    def steppers(self) -> list[GradientStepper]:
        return list(self.optimizers.values())

    # ----------------------------------------------------------------- train
    def train(self) -> dict[str, float]:
        self.run_updates(self.train_update)
        return self.stage_metrics.result()

    def train_update(self, update: UpdateBatches) -> None:
        """One update: each active step over the update's micro-batches, then its optimizer
        step; the state is detached after each step."""
        states = [self.batch_state(batch) for batch in update.batches]
        metrics: dict[str, Any] = {}
        for step in self.graph.steps:
            if step.active(self.update_count):
                metrics.update(self.train_step(step, update, states))
                for state in states:
                    state.detach_()
        self.stage_metrics.update(metrics, count=sum(batch_size_of(b) for b in update.batches))

    def train_step(self, step: Step, update: UpdateBatches, states: list[State]) -> dict[str, Any]:
        """One step over the update's micro-batches, then its optimizer step."""
        stepper = self.optimizers[step.name]
        terms: dict[str, torch.Tensor] = {}
        sizes = [batch_size_of(batch) for batch in update.batches]
        metrics: dict[str, Any] = {}
        with self.only_trained(step):
            for idx, _ in update.micro_batches(stepper):
                state = states[idx - update.first_batch]
                ctx = self.context(step, state, trained=True)
                with self.autocast():
                    loss, values = self.step_loss(step, ctx)
                metrics.update(stepper.step(loss))
                share = sizes[idx - update.first_batch] / sum(sizes)
                for key, value in values.items():
                    terms[key] = terms.get(key, 0.0) + value.detach().float() * share
        metrics.update(terms)
        return metrics

    @contextlib.contextmanager
    def only_trained(self, step: Step) -> Iterator[None]:
        """While `step` runs, the networks it does not train need no gradient."""
        others = [
            p for n, s in self.graph.networks.items() if s.kind != "frozen" and n not in step.trains
            for p in self.networks[n].parameters() if p.requires_grad
        ]
        for param in others:  # only those that train: a part frozen by its author stays frozen
            param.requires_grad_(False)
        try:
            yield
        finally:
            for param in others:
                param.requires_grad_(True)

    def context(self, step: Step, state: State, trained: bool) -> StepContext:
        """A step's view of one micro-batch; keys it reads that no active step wrote are
        computed first, without autograd."""
        trains = step.trains if trained else []

        def network(name: str) -> nn.Module:
            return self._callable[name] if name in trains else self.networks[name]

        ctx = StepContext(state, network, trains, step.name, self.update_count, self.sample_rate, self.is_training)
        self.provide(state, step.external_reads)
        return ctx

    def step_loss(self, step: Step, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run the step's injectors, then return (the weighted sum of its losses, each term)."""
        for injector in step.injectors:
            self.run_injector(injector, ctx)
        total: torch.Tensor | None = None
        values: dict[str, torch.Tensor] = {}
        distributed = any(self._callable[n] is not self.networks[n] for n in ctx.trained)
        own = set(step.outputs())
        for loss in step.losses:
            on = loss.active(ctx.update)
            # Under DDP, a gated-off loss that reads what this step's networks computed still
            # joins the graph, times 0: DDP expects a gradient for every parameter of a module
            # it ran forward. A loss that runs its own network (a discriminator) is skipped:
            # that network then does not run at all, which DDP allows.
            if not on and not (distributed and own.intersection(loss.reads())):
                continue
            value = loss(ctx)
            weighted = value * (loss.weight if on else 0.0)
            total = weighted if total is None else total + weighted
            if on:
                values[loss.name] = value
        assert total is not None, f"step '{step.name}' ran with no active loss"
        values[f"{step.name}_loss"] = total
        return total, values

    def run_injector(self, injector: Any, ctx: StepContext, provisional: bool = False) -> None:
        where = f"steps.{ctx.step}.injectors.{injector.name}"
        inputs = [ctx.state.read(key, where) for key in injector.inputs]
        result = injector(ctx, *inputs)
        values = [result] if len(injector.outputs) == 1 else list(result)
        for key, value in zip(injector.outputs, values, strict=True):
            ctx.state.write(key, value, where, provisional)

    def provide(self, state: State, keys: list[str]) -> None:
        """Compute state keys that are missing, through the injectors that write them (and
        theirs, recursively), without autograd and with no network trained."""
        for key in keys:
            if key in state:
                continue
            if key not in self.graph.writers:
                raise ConfigError(
                    f"state key '{key}' is read by the config but this batch has only {', '.join(state)} "
                    "(labels need a manifest with labels); read another key or provide it with an injector"
                )
            owner, injector = self.graph.writers[key]
            self.provide(state, list(injector.inputs))
            ctx = StepContext(
                state, lambda name: self.networks[name], (), owner.name, self.update_count, self.sample_rate, self.is_training,
            )
            with torch.no_grad(), self.autocast():
                self.run_injector(injector, ctx, provisional=True)

    def batch_state(self, batch: Any) -> State:
        """A micro-batch's fields as the state every step starts from."""
        if isinstance(batch, AudioBatch):
            return State(batch.to(self.device).as_dict())
        if isinstance(batch, Mapping):
            return State(dict(self.to_device(dict(batch))))
        raise ConfigError(
            f"the extensible solver needs batches of named fields (AudioBatch or a dict), got "
            f"{type(batch).__name__}; return a dict from the dataset's collate function"
        )

    def evaluation_state(self, batch: Any, index: int) -> State:
        """A batch's state outside training, with one seed per item for random injectors: from
        the item's place in its dataset (or the batch's place in the pass), the same each epoch."""
        state = self.batch_state(batch)
        infos, seed = state.get("infos"), int(self.cfg.seed)
        count = batch_size_of(batch)
        if infos is not None and len(infos) == count:
            state.item_seeds = [derive_seed(seed, info.index, round(info.offset * 1e6)) for info in infos]
        else:
            state.item_seeds = [derive_seed(seed, distrib.rank(), index, i) for i in range(count)]
        return state

    # ----------------------------------------------------------------- valid, evaluate, generate
    def valid(self) -> dict[str, float]:
        """Every step's losses without gradient, then the evaluators due this epoch."""
        with self.swap_ema_state(), self.gathered():
            evaluators = [e for e in self.graph.evaluators if self.should_run_every(e.every)]
            batches = self.loader_batches(self.dataloaders["valid"], self.settings.valid_num_samples)
            return self.measure(batches, losses=True, evaluators=evaluators)

    def evaluate(self) -> dict[str, float]:
        """The evaluators on the evaluate split (with the best state, as every evaluate stage)."""
        if "evaluate" not in self.dataloaders or not self.graph.evaluators:
            return {}
        return self.measure(self.loader_batches(self.dataloaders["evaluate"]), losses=False, evaluators=self.graph.evaluators)

    def measure(self, batches: Any, losses: bool, evaluators: list[Any]) -> dict[str, float]:
        average = self.stage_metrics
        for index, batch in batches:
            state = self.evaluation_state(batch, index)
            metrics: dict[str, Any] = {}
            if losses:
                for step in self.graph.steps:
                    if any(loss.active(self.update_count) for loss in step.losses):
                        ctx = self.context(step, state, trained=False)
                        with self.autocast():
                            metrics.update(self.step_loss(step, ctx)[1])
            for evaluator in evaluators:
                self.provide(state, evaluator.reads())
                metrics.update(evaluator(state, self.sample_rate))
            average.update(metrics, count=batch_size_of(batch))
        return average.result()

    def generate(self) -> dict[str, float]:
        """Write the state keys of `generate.audio` as WAVs for the first `generate.num_samples`
        items: samples/<epoch>/<n>_<label>_<key>.wav (each once over all ranks, see SampleWriter)."""
        keys = list(self.cfg.generate.get("audio") or [])
        if not keys or "generate" not in self.dataloaders:
            return {}
        limit = int(self.cfg.generate.get("num_samples", DEFAULT_SAMPLES))
        writer = SampleWriter(self.folder / "samples" / str(self.epoch), limit)
        for index, batch in self.loader_batches(self.dataloaders["generate"], limit):
            state = self.evaluation_state(batch, index)
            self.provide(state, keys)
            infos = state.get("infos")
            labels = [info.label for info in infos] if infos is not None else None
            for i, _, stem in writer.items(batch_size_of(batch), labels):
                length = int(state["lengths"][i]) if "lengths" in state else None
                for key in keys:
                    wav = state[key][i].float().clamp(-1, 1)
                    writer.write(f"{stem}_{key}", wav[..., :length] if length else wav, self.sample_rate)
            if writer.full:
                break
        return {}


def _merged(base: Any, overrides: Mapping[str, Any], where: str) -> Any:
    """`base` (a config section) with `overrides` on top; an unknown key is an error."""
    merged = OmegaConf.to_container(base, resolve=True)
    assert isinstance(merged, dict)
    for key, value in overrides.items():
        if value is None and key == "optimizer":
            continue
        if key not in merged:
            raise ConfigError(f"{where}.{key} is unknown; it takes {', '.join(sorted(map(str, merged)))}")
        merged[key] = value
    return OmegaConf.create(merged)

