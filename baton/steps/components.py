"""The pieces a step is made of, and the state they share.

- `State`: one micro-batch's named tensors. It starts as the batch's fields (`wav`, `lengths`,
  `labels`); injectors add keys; a key has one writer, so a config cannot silently overwrite
  another injector's output.
- `Injector`: reads keys, writes keys (run a network, add noise, crop, compute a mel).
- `Loss`: reads keys, returns a scalar; the step sums `weight * loss` over its losses.
- `Evaluator`: reads keys during validation, returns metrics.
- `StepContext`: what a component sees while one step runs on one micro-batch: the state, the
  networks (through their DDP wrapper when this step trains them), and a memo so that a
  discriminator runs once per input even when several losses read its output.

Subclasses take their own options as keyword arguments; the common ones (`in`/`out` of an
injector, `weight`/`after`/`before` of a loss, `every` of an evaluator) are set by the builder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import ConfigError

# What a discriminator returns, normalised: one logit tensor per sub-discriminator, and each
# sub-discriminator's feature maps (for feature matching).
DiscriminatorOutput = tuple[list[torch.Tensor], list[list[torch.Tensor]]]


class State(dict[str, Any]):
    """A micro-batch's named values; `writers` says who wrote each key (`batch` for its fields)."""

    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__(fields)
        self.writers = {key: "the batch" for key in fields}
        # Outside training, one seed per item (from the run's seed and the item): what random
        # injectors draw from there, so every evaluation sees the same noise. None in training.
        self.item_seeds: list[int] | None = None
        # Keys computed ahead of their step (on demand, without autograd, for a step that ran
        # first): their own injector replaces them when its step runs.
        self.provisional: set[str] = set()

    def write(self, key: str, value: Any, writer: str, provisional: bool = False) -> None:
        if key in self and key not in self.provisional:
            raise ConfigError(
                f"{writer} writes state key '{key}', already written by {self.writers[key]}; "
                "give one of them another output name"
            )
        self[key] = value
        self.writers[key] = writer
        if provisional:
            self.provisional.add(key)
        else:
            self.provisional.discard(key)

    def read(self, key: str, reader: str) -> Any:
        if key not in self:
            raise ConfigError(f"{reader} reads state key '{key}', which nothing has written; known: {', '.join(self)}")
        return self[key]

    def detach_(self) -> None:
        """Drop every stored tensor's graph: the next step sees values, and their memory is freed."""
        for key, value in self.items():
            self[key] = _detached(value)


class StepContext:
    """One step on one micro-batch.

    Args:
        state: the micro-batch's state.
        network: name -> the module to call (the DDP wrapper when this step trains it).
        trained: names of the networks this step trains.
        step: the step's name, for error messages.
        update: the number of updates done before this one (gating of losses).
        sample_rate: of the audio in the state.
        training: False in valid/evaluate/generate, where random injectors (slice, augment)
            are deterministic: crops from 0, no augmentation.
    """

    def __init__(
        self, state: State, network: Callable[[str], nn.Module], trained: Iterable[str],
        step: str, update: int, sample_rate: int, training: bool = True,
    ) -> None:
        self.state = state
        self._network = network
        self.trained = frozenset(trained)
        self.step = step
        self.update = update
        self.sample_rate = sample_rate
        self.training = training
        self._memo: dict[tuple[str, ...], Any] = {}
        self._forwards: dict[str, int] = {}

    def network(self, name: str) -> nn.Module:
        return self._network(name)

    def run_network(self, name: str, *inputs: torch.Tensor) -> Any:
        """Call a network; without autograd when it is not trained here and no input needs a
        gradient (a frozen network, a discriminator scoring real audio in the generator's step)."""
        module = self.network(name)
        if name in self.trained:
            if isinstance(module, DistributedDataParallel):
                self._forwards[name] = self._forwards.get(name, 0) + 1
                if self._forwards[name] > 1:
                    raise ConfigError(
                        f"step '{self.step}' runs network '{name}', which it trains, twice in one "
                        "micro-batch; under DDP a trained network runs once per backward: feed it "
                        "one batch (as discriminator_gan does with real and fake), or train it in another step"
                    )
            return module(*inputs)
        if any(x.requires_grad for x in inputs) and torch.is_grad_enabled():
            return module(*inputs)
        with torch.no_grad():
            return module(*inputs)

    def discriminate(self, name: str, key: str) -> DiscriminatorOutput:
        """Network `name` on state key `key`, computed once per step and micro-batch."""
        memo_key = (name, key)
        if memo_key not in self._memo:
            x = self.state.read(key, f"step '{self.step}'")
            self._memo[memo_key] = as_discriminator_output(self.run_network(name, x))
        return self._memo[memo_key]

    def discriminate_pair(self, name: str, real: str, fake: str) -> tuple[DiscriminatorOutput, DiscriminatorOutput]:
        """The discriminator on real and (detached) fake audio in ONE forward, split after.

        One forward per update is what DDP expects of a module it wraps; it also halves the
        kernel launches."""
        memo_key = (name, real, fake)
        if memo_key not in self._memo:
            x = self.state.read(real, f"step '{self.step}'")
            y = self.state.read(fake, f"step '{self.step}'").detach()
            joint = as_discriminator_output(self.run_network(name, torch.cat([x, y.to(x.dtype)])))
            size = x.shape[0]
            logits, features = joint
            self._memo[memo_key] = (
                ([t[:size] for t in logits], [[f[:size] for f in fs] for fs in features]),
                ([t[size:] for t in logits], [[f[size:] for f in fs] for fs in features]),
            )
        return self._memo[memo_key]


def as_discriminator_output(output: Any) -> DiscriminatorOutput:
    """Accept a tensor of logits, or (logits, features) with logits a tensor or a list."""
    if isinstance(output, torch.Tensor):
        return [output], [[]]
    logits, features = output
    if isinstance(logits, torch.Tensor):
        return [logits], [list(features)]
    return list(logits), [list(f) for f in features]


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


class Injector:
    """Reads `inputs`, returns one value per key of `outputs` (a tensor when there is one).

    `num_inputs` / `num_outputs` (None: any number; "inputs": as many as inputs) are checked
    when the config is read."""

    num_inputs: int | None = 1
    num_outputs: int | str | None = 1
    name: str = ""
    inputs: list[str]
    outputs: list[str]

    def networks(self) -> list[str]:
        """The networks it runs (checked against `networks:` before training)."""
        return []

    def check_io(self, where: str) -> None:
        if self.num_inputs is not None and len(self.inputs) != self.num_inputs:
            raise ConfigError(f"{where}: takes {self.num_inputs} input key(s) in 'in', got {self.inputs}")
        if not self.outputs:
            raise ConfigError(f"{where}: needs output key(s) in 'out'")
        expected = len(self.inputs) if self.num_outputs == "inputs" else self.num_outputs
        if expected is not None and len(self.outputs) != expected:
            raise ConfigError(f"{where}: writes {expected} key(s) in 'out', got {self.outputs}")

    def __call__(self, ctx: StepContext, *inputs: Any) -> Any:
        raise NotImplementedError


class Loss:
    """A scalar from the state; `weight` scales it, `after`/`before` gate it by update count."""

    name: str = ""
    weight: float = 1.0
    after: int | None = None
    before: int | None = None

    def reads(self) -> list[str]:
        """State keys it reads (checked before training)."""
        return []

    def networks(self) -> list[str]:
        return []

    def active(self, update: int) -> bool:
        return gate(update, self.after, self.before)

    def __call__(self, ctx: StepContext) -> torch.Tensor:
        raise NotImplementedError


class Evaluator:
    """Metrics of one validation batch's state, averaged over items; runs every `every` epochs."""

    name: str = ""
    every: int = 1

    def reads(self) -> list[str]:
        return []

    def __call__(self, state: State, sample_rate: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def gate(update: int, after: int | None, before: int | None, every: int | None = None) -> bool:
    """DLAS's step and loss gating: from update `after` on, before update `before`, every N."""
    if after is not None and update < after:
        return False
    if before is not None and update >= before:
        return False
    return every is None or every <= 1 or update % every == 0


def _detached(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (list, tuple)):
        return type(value)(_detached(v) for v in value)
    return value
