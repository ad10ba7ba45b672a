"""FSDP2 for the engine: each rank holds a shard of every trainable module, its gradients and
its optimizer state, instead of a full copy (`distributed.strategy=fsdp`).

What the engine does when it shards (`shard_trainable`, from `SolverCore.prepare`):
- `fully_shard` on each block the config names (`distributed.fsdp.blocks`: class names, e.g. the
  LM's transformer layers), then on every registered trainable module as a whole. A block is
  gathered for its own forward and freed after it, so peak memory holds one block's full
  weights, not the model's. Without named blocks a module is one unit (sharded at rest, whole
  during its forward and backward).
- mixed precision through FSDP2's policy when `autocast` is on: parameters gathered in
  bfloat16, gradients reduced in float32. float16 (which needs a GradScaler over sharded
  gradients) is refused.
- the module object stays the same (FSDP2 changes its class in place), so a task keeps writing
  `self.model.sample_rate`; but its parameters become new `DTensor` parameters, so the
  optimizers built before are re-pointed at them by name, and the EMA restarts from the
  sharded weights (averages stay sharded: no full copy on any rank).

Training must go through the module's `forward` (`self.model(x)`), as under DDP: that is
where FSDP gathers the weights. Evaluation stages may call any method (`encode`, `generate`):
`gathered` keeps every shard gathered for the whole stage.

Checkpoints of sharded state go through `baton.sharded` (torch.distributed.checkpoint).
`full_tensors` and `shard_like` convert between sharded and whole state for the writers that
keep whole tensors (a Brain's Checkpointer).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from . import ddp

STRATEGIES = ("ddp", "fsdp")


def fsdp_api() -> Any:
    """torch.distributed.fsdp with FSDP2's `fully_shard` (torch >= 2.6)."""
    from torch.distributed import fsdp

    if not hasattr(fsdp, "fully_shard"):
        raise ConfigError(f"distributed.strategy=fsdp needs torch >= 2.6 (FSDP2), this is {torch.__version__}; "
                          "upgrade torch or use distributed.strategy=ddp")
    return fsdp


def is_sharded(module: nn.Module) -> bool:
    """Whether `fully_shard` made `module` a unit (told without importing FSDP, which is slow)."""
    return hasattr(module, "set_requires_gradient_sync") and hasattr(module, "unshard")


def mixed_precision(autocast: bool, dtype: str) -> Any:
    """FSDP2's policy: bfloat16 compute, float32 reduction, when autocast is on; else None."""
    if not autocast or dtype != "bfloat16":  # float16 is refused by LoopSettings
        return None
    fsdp = fsdp_api()
    return fsdp.MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def shard_trainable(
    modules: Mapping[str, nn.Module], *, blocks: Iterable[str] = (), policy: Any = None,
    reshard_after_forward: bool = True,
) -> dict[str, nn.Module]:
    """`fully_shard` each module with trainable parameters (and its blocks of a named class),
    in place. Returns name -> the sharded modules. Collective.

    Raises:
        ConfigError: a block class named in `blocks` that no module holds.
        DistributedError: the ranks built different models.
    """
    fsdp = fsdp_api()
    trainable = {
        name: module for name, module in modules.items()
        if not is_sharded(module) and any(p.requires_grad for p in module.parameters())
    }
    wanted = set(blocks)
    classes = sorted({type(m).__name__ for module in trainable.values() for m in module.modules()})
    missing = wanted - {type(m).__name__ for module in trainable.values() for m in module.modules()
                        if any(p.requires_grad for p in m.parameters())}
    if missing:  # checked before anything is sharded: the message names the classes as written
        raise ConfigError(
            f"distributed.fsdp.blocks names {', '.join(sorted(missing))}, which no trainable module holds; "
            f"name classes of the model's blocks (it has {', '.join(classes[:12])})"
        )
    ddp.check_same_layout(trainable)
    options: dict[str, Any] = {"reshard_after_forward": reshard_after_forward}
    if policy is not None:
        options["mp_policy"] = policy
    for module in trainable.values():
        for sub in reversed(list(module.modules())[1:]):  # inner blocks first: FSDP2 goes bottom-up
            if type(sub).__name__ in wanted and any(p.requires_grad for p in sub.parameters()):
                fsdp.fully_shard(sub, **options)
        fsdp.fully_shard(module, **options)
    return trainable


def repoint_optimizers(
    optimizers: Iterable[torch.optim.Optimizer], before: Mapping[int, tuple[nn.Module, str]],
) -> None:
    """Replace, in each optimizer's groups, the parameters sharding replaced: `before` maps
    id(old parameter) -> (its module, its name there). The optimizers have not stepped yet."""
    for optimizer in optimizers:
        if optimizer.state:  # keyed by the replaced parameters: it would be lost
            raise ConfigError("an optimizer stepped before training started; build optimizers in build(), step them in training")
        for group in optimizer.param_groups:
            params = []
            for p in group["params"]:
                owner = before.get(id(p))
                params.append(p if owner is None else owner[0].get_parameter(owner[1]))
            group["params"] = params


def parameter_owners(modules: Iterable[nn.Module]) -> dict[int, tuple[nn.Module, str]]:
    """id(parameter) -> (module, name): taken before sharding, to re-point optimizers after."""
    return {id(p): (module, name) for module in modules for name, p in module.named_parameters()}


def torch_optimizers(values: Iterable[Any]) -> list[torch.optim.Optimizer]:
    """The torch optimizers among steppers, optimizer groups and optimizers."""
    found: list[torch.optim.Optimizer] = []
    for value in values:
        inner = getattr(value, "optimizer", value)
        group = getattr(inner, "optimizers", None)
        for optimizer in (group.values() if isinstance(group, Mapping) else [inner]):
            if isinstance(optimizer, torch.optim.Optimizer) and optimizer not in found:
                found.append(optimizer)
    return found


def init_optimizer_state(optimizers: Iterable[torch.optim.Optimizer]) -> None:
    """Give each optimizer that has not stepped its state tensors (zeros, with the parameters'
    sharding), so a checkpoint's sharded optimizer state has somewhere to load into."""
    from torch.distributed.checkpoint.state_dict import (
        _init_optim_state,  # what get_state_dict uses
    )

    for optimizer in optimizers:
        if not optimizer.state:
            _init_optim_state(optimizer)


@contextlib.contextmanager
def gathered(modules: Iterable[nn.Module], reshard_after_forward: bool = True) -> Iterator[None]:
    """Hold the full weights of every sharded module (and block) for the block's duration, so
    evaluation may call any method of a model, not only `forward`; afterwards each unit frees
    them again, and gets back `reshard_after_forward` (the config's). No-op without FSDP."""
    modules = list(modules)
    units: list[Any] = [m for module in modules if is_sharded(module) for m in module.modules() if is_sharded(m)]
    if not units:
        yield
        return
    for root in modules:
        if is_sharded(root):
            root._get_fsdp_state()._lazy_init()  # type: ignore[operator]  # as its first forward would
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
        unit.unshard()
    try:
        yield
    finally:
        for unit in units:
            unit.reshard()
            unit.set_reshard_after_forward(reshard_after_forward, recurse=False)


def full_tensors(state: Any) -> Any:
    """`state` with every DTensor gathered into a whole tensor. Collective: every rank calls
    it on the same structure."""
    from torch.distributed.tensor import DTensor

    if isinstance(state, DTensor):
        return state.full_tensor()
    if isinstance(state, Mapping):
        return type(state)((k, full_tensors(v)) for k, v in state.items())  # type: ignore[call-arg]
    if isinstance(state, (list, tuple)):
        return type(state)(full_tensors(v) for v in state)
    return state


def shard_like(saved: Any, live: Any) -> Any:
    """`saved` with each whole tensor cut to this rank's shard wherever `live` holds a DTensor
    at the same place (no communication: every rank has the whole tensor)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(live, DTensor) and isinstance(saved, torch.Tensor) and not isinstance(saved, DTensor):
        if tuple(saved.shape) != tuple(live.shape):
            return saved  # load_state_dict names the mismatch
        return distribute_tensor(saved.to(live.device), live.device_mesh, live.placements, src_data_rank=None)
    if isinstance(saved, Mapping) and isinstance(live, Mapping):
        out = type(saved)((k, shard_like(v, live[k]) if k in live else v) for k, v in saved.items())  # type: ignore[call-arg]
        return out
    if isinstance(saved, (list, tuple)) and isinstance(live, (list, tuple)) and len(saved) == len(live):
        return type(saved)(shard_like(s, v) for s, v in zip(saved, live, strict=True))
    return saved
