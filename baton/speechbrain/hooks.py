"""Checkpoint hooks: how each kind of recoverable is written to and read from its file
(SpeechBrain's `register_checkpoint_hooks`, `mark_as_saver`, `mark_as_loader` and defaults)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..checkpoint import load_file
from ..errors import CheckpointError
from ..solver import fsdp
from ..stateful import is_dtensor

logger = logging.getLogger("baton.checkpointer")

SaveHook = Callable[[Any, Path], Any]
LoadHook = Callable[[Any, Path, bool], Any]
C = TypeVar("C", bound=type)
H = TypeVar("H")
F = TypeVar("F", bound=Callable[..., Any])
TRUST_HINT = "pass Checkpointer(..., trusted=True)"


def _unwrap_module(obj: Any) -> Any:
    """The plain module inside DDP / DataParallel / torch.compile wrappers, so files hold plain
    keys (no `module.` or `_orig_mod.` prefix) that load with or without the wrapper."""
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    while True:
        if isinstance(obj, wrappers):
            obj = obj.module
        elif isinstance(obj, torch.nn.Module) and isinstance(getattr(obj, "_orig_mod", None), torch.nn.Module):
            obj = obj._orig_mod
        else:
            return obj


def holds_shards(obj: Any) -> bool:
    """Whether `obj` is sharded by FSDP (a module, or an optimizer over sharded parameters):
    its file then holds whole tensors, gathered by every rank (see `torch_save`)."""
    if isinstance(obj, torch.nn.Module):
        return fsdp.is_sharded(obj)
    if isinstance(obj, torch.optim.Optimizer):
        return any(is_dtensor(p) for group in obj.param_groups for p in group["params"])
    return False


def torch_save(obj: Any, path: Path) -> None:
    """Default save hook: `torch.save` of the object's `state_dict()`. A sharded object's state
    is gathered into whole tensors first (collective: the Checkpointer runs this hook on every
    rank for it), so its file is the same as one process writes, and loads on any world size."""
    state = _unwrap_module(obj).state_dict()
    if holds_shards(obj):
        state = fsdp.full_tensors(state)
    torch.save(state, path)


def torch_recovery(
    obj: Any, path: Path, end_of_epoch: bool, *, trusted: bool = False, strict: bool = True
) -> None:
    """Default load hook: `load_state_dict` of the file, loaded safely (see `load_file`).

    The Checkpointer passes its `trusted` flag, and `strict=False` when it allows partial
    loads: a module then takes the keys it knows and the others are logged.
    """
    del end_of_epoch  # a state dict is the same at the end of an epoch or inside one
    state = load_file(path, trusted=trusted, trust_hint=TRUST_HINT)
    target = _unwrap_module(obj)
    if holds_shards(target):  # whole tensors in the file: this rank takes its shard of each
        if isinstance(target, torch.optim.Optimizer):
            fsdp.init_optimizer_state([target])
        state = fsdp.shard_like(state, target.state_dict())
    if not isinstance(target, torch.nn.Module):
        target.load_state_dict(state)
        return
    try:
        result = target.load_state_dict(state, strict=strict)
    except RuntimeError as exc:  # torch's message spans many lines: one line, naming the file
        problem = " ".join(str(exc).split())
        raise CheckpointError(
            f"{path} does not fit {type(target).__name__}: {problem}; build the same model, or "
            "load what fits with Checkpointer(..., allow_partial_load=True)"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        logger.warning(
            "partial load of %s from %s: missing keys %s, unexpected keys %s",
            type(target).__name__, path, result.missing_keys, result.unexpected_keys,
        )


DEFAULT_SAVE_HOOKS: dict[type, SaveHook] = {}
DEFAULT_LOAD_HOOKS: dict[type, LoadHook] = {}
_STATEFUL_TYPES: list[Any] = [
    torch.nn.Module,
    torch.optim.Optimizer,
    torch.optim.lr_scheduler.LRScheduler,
    torch.optim.lr_scheduler.ReduceLROnPlateau,
    getattr(getattr(torch, "amp", None), "GradScaler", None),
    getattr(torch.cuda.amp, "GradScaler", None),
]
for _cls in _STATEFUL_TYPES:
    if isinstance(_cls, type):
        DEFAULT_SAVE_HOOKS[_cls] = torch_save
        DEFAULT_LOAD_HOOKS[_cls] = torch_recovery

# Savers that run on every rank (registered with save_on_main_only=False): they may gather
# state with a collective, which every rank must join.
SAVE_ON_ALL_RANKS: set[Any] = set()


def get_default_hook(obj: Any, default_hooks: Mapping[type, H]) -> H | None:
    """The hook registered for `obj`'s class or the nearest base class (its MRO), else None."""
    for cls in type(obj).__mro__:
        if cls in default_hooks:
            return default_hooks[cls]
    return None


def mark_as_saver(method: F) -> F:
    """Mark a method `(self, path)` as its class's save hook (the class also needs
    `@register_checkpoint_hooks`). The signature is checked now, not at the first save."""
    if not _accepts(method, 2):
        raise TypeError(f"checkpoint saver {method.__qualname__} must have the signature (self, path)")
    method._baton_saver = True  # type: ignore[attr-defined]
    return method


def mark_as_loader(method: F) -> F:
    """Mark a method `(self, path, end_of_epoch)` as its class's load hook (the class also
    needs `@register_checkpoint_hooks`). SpeechBrain's older `(self, path, end_of_epoch,
    device)` is accepted too and called with `device=None`."""
    if _accepts(method, 3):
        method._baton_loader = "plain"  # type: ignore[attr-defined]
    elif _accepts(method, 4):
        method._baton_loader = "device"  # type: ignore[attr-defined]
    else:
        raise TypeError(
            f"checkpoint loader {method.__qualname__} must have the signature (self, path, end_of_epoch)"
        )
    return method


def _accepts(method: Callable[..., Any], count: int) -> bool:
    try:
        inspect.signature(method).bind(*([None] * count))
    except (TypeError, ValueError):
        return False
    return True


def register_checkpoint_hooks(cls: C, save_on_main_only: bool = True) -> C:
    """Class decorator: make the methods marked `@mark_as_saver` / `@mark_as_loader` the
    default hooks for this class and its subclasses.

    The hooks call the method by name on the object, so a subclass that overrides it is
    saved with its own override.

    Args:
        save_on_main_only: False for a saver that every rank must run (e.g. one that gathers
            sharded state with a collective); ranks other than 0 then write into a scratch
            folder that is thrown away.
    """
    for attr, method in vars(cls).items():
        if getattr(method, "_baton_saver", False):
            saver = _saver_calling(attr)
            DEFAULT_SAVE_HOOKS[cls] = saver
            if not save_on_main_only:
                SAVE_ON_ALL_RANKS.add(saver)
        kind = getattr(method, "_baton_loader", None)
        if kind is not None:
            DEFAULT_LOAD_HOOKS[cls] = _loader_calling(attr, with_device=kind == "device")
    return cls


def _saver_calling(attr: str) -> SaveHook:
    def saver(obj: Any, path: Path) -> Any:
        return getattr(obj, attr)(path)

    saver.__qualname__ = f"saver calling .{attr}"
    return saver


def _loader_calling(attr: str, *, with_device: bool) -> LoadHook:
    def loader(obj: Any, path: Path, end_of_epoch: bool) -> Any:
        if with_device:
            return getattr(obj, attr)(path, end_of_epoch, None)
        return getattr(obj, attr)(path, end_of_epoch)

    loader.__qualname__ = f"loader calling .{attr}"
    return loader


def no_hook_error(what: str, name: str, obj: Any) -> TypeError:
    return TypeError(
        f"don't know how to {what} recoverable '{name}' ({type(obj).__qualname__}): give its class "
        "state_dict()/load_state_dict(), or @register_checkpoint_hooks with @mark_as_saver and "
        "@mark_as_loader methods, or pass custom_save_hooks/custom_load_hooks for it"
    )
