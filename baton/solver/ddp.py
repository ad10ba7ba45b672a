"""DistributedDataParallel, owned by the engine: a task never writes DDP code.

When training starts on more than one rank, every registered module with trainable parameters
is wrapped, and the steppers that were given the plain module get the wrapper (its `no_sync`
holds back the all-reduce while accumulating). Checkpoints keep plain keys: the state registry
unwraps. Before wrapping, the ranks compare their modules' parameter names and shapes: DDP
would otherwise hang in its first broadcast, or fail with a message that names no module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import distrib
from ..errors import DistributedError


class EngineDDP(DistributedDataParallel):
    """DDP whose unknown attributes are looked up on the wrapped module.

    A task keeps writing `self.model.sample_rate` or `self.model.bandwidth(n_q)` on one rank
    and on many. Only `forward` goes through DDP: gradients are synchronised for what the
    forward computes, so train through `self.model(...)`, not through another method.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":  # still being constructed
                raise
            return getattr(self.module, name)


def parameter_layout(modules: Mapping[str, nn.Module]) -> dict[str, list[tuple[str, tuple[int, ...]]]]:
    """Each module's trainable parameters, as (name, shape), in registration order."""
    return {
        name: [(key, tuple(p.shape)) for key, p in module.named_parameters() if p.requires_grad]
        for name, module in modules.items()
    }


def check_same_layout(modules: Mapping[str, nn.Module]) -> None:
    """Raise on every rank, naming the module, when ranks built different models. Collective.

    Raises:
        DistributedError: the ranks' modules differ in names, parameter count or shapes.
    """
    layouts = distrib.all_gather_object(parameter_layout(modules))
    reference = layouts[0]
    for rank, layout in enumerate(layouts[1:], start=1):
        if layout == reference:
            continue
        names = list(dict.fromkeys([*reference, *layout]))
        name = next(n for n in names if reference.get(n) != layout.get(n))
        ours, theirs = reference.get(name), layout.get(name)
        if ours is None or theirs is None:
            detail = f"registered on rank {0 if theirs is None else rank} only"
        elif len(ours) != len(theirs):
            detail = f"{len(ours)} trainable parameters on rank 0, {len(theirs)} on rank {rank}"
        else:
            key, shape, other = next((k, s, t) for (k, s), (_, t) in zip(ours, theirs, strict=True) if s != t)
            detail = f"parameter '{key}' has shape {list(shape)} on rank 0, {list(other)} on rank {rank}"
        raise DistributedError(
            f"module '{name}' differs between ranks ({detail}); build the same model on every "
            "rank (rank-dependent config or random architecture choices?)"
        )


def wrap_trainable(
    modules: Mapping[str, nn.Module],
    device: torch.device,
    *,
    find_unused_parameters: bool = False,
    broadcast_buffers: bool = True,
) -> dict[str, EngineDDP]:
    """Wrap each module that has trainable parameters; returns name -> wrapper. Collective.

    Modules already wrapped by hand and modules with nothing to train are left alone.
    """
    trainable = {
        name: module for name, module in modules.items()
        if not isinstance(module, DistributedDataParallel)
        and any(p.requires_grad for p in module.parameters())
    }
    check_same_layout(trainable)
    device_ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return {
        name: EngineDDP(
            module,
            device_ids=device_ids,
            find_unused_parameters=find_unused_parameters,
            broadcast_buffers=broadcast_buffers,
        )
        for name, module in trainable.items()
    }


def rewire_steppers(steppers: Iterable[Any], wrappers: Mapping[str, nn.Module]) -> None:
    """Give steppers the wrapper wherever they were handed the plain module."""
    by_module = {id(w.module): w for w in wrappers.values()}
    for stepper in steppers:
        stepper.modules = [by_module.get(id(m), m) for m in stepper.modules]
