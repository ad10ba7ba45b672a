"""What a solver checkpoints, declared once, and the RNG states that make resume exact.

`StateRegistry` holds the names of the solver attributes that shape the future of training.
Attributes are looked up by name at save time, so reassigning `self.model` is safe. An attribute
with `state_dict`/`load_state_dict` is saved through them; any other (an int, a list) is saved as
a value and restored with setattr.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


def unwrap(value: Any) -> Any:
    """The module inside a DDP / DataParallel wrapper, so checkpoints hold plain keys (no
    `module.` prefix) that load with or without the wrapper and export as plain weights."""
    wrapped = getattr(value, "module", None)
    return wrapped if isinstance(value, torch.nn.Module) and isinstance(wrapped, torch.nn.Module) else value


def is_dtensor(value: Any) -> bool:
    """A DTensor (a shard under FSDP), told without importing torch.distributed.tensor for plain runs."""
    return isinstance(value, torch.Tensor) and type(value).__name__ == "DTensor"


def copy_state(state: Any, device: str | torch.device = "cpu") -> Any:
    """Deep copy of a (nested) state with every tensor cloned onto `device`.

    Used for the best state (which must not alias live weights) and for background saves
    (which must not see weights that training keeps changing). A sharded tensor is cloned where
    it is: moved, it would no longer match its device mesh.
    """
    if isinstance(state, torch.Tensor):
        if is_dtensor(state):  # a shard (FSDP): stays on its mesh's device, 1/N of the whole
            return state.detach().clone()
        return state.detach().to(device, copy=True)
    if isinstance(state, Mapping):
        # OrderedDict stays an OrderedDict: some load_state_dict implementations check the type.
        return type(state)((k, copy_state(v, device)) for k, v in state.items())  # type: ignore[call-arg]
    if isinstance(state, list):
        return [copy_state(v, device) for v in state]
    if isinstance(state, tuple):
        return tuple(copy_state(v, device) for v in state)
    return copy.deepcopy(state)


class StateRegistry:
    """Names of an owner's attributes that are part of its checkpoint."""

    def __init__(self, owner: object) -> None:
        self._owner = owner
        self._names: list[str] = []

    def register(self, *names: str) -> None:
        for name in names:
            if not hasattr(self._owner, name):
                raise AttributeError(
                    f"register_stateful('{name}'): {type(self._owner).__name__} has no attribute "
                    f"'{name}'; assign self.{name} before registering it"
                )
            if name in self._names:
                raise ValueError(f"'{name}' is registered twice")
            self._names.append(name)

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def get(self, name: str) -> Any:
        """The attribute, unwrapped from DDP if it is a wrapped module."""
        return unwrap(getattr(self._owner, name))

    def state_dict(self, names: list[str] | None = None) -> dict[str, Any]:
        state = {}
        for name in names if names is not None else self._names:
            value = self.get(name)
            state[name] = value.state_dict() if isinstance(value, Stateful) else value
        return state

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> None:
        missing = [n for n in self._names if n not in state]
        if strict and missing:
            raise KeyError(f"checkpoint lacks registered state {missing}")
        for name in self._names:
            if name not in state:
                continue
            value = self.get(name)
            if isinstance(value, Stateful):
                value.load_state_dict(state[name])
            else:
                setattr(self._owner, name, state[name])


def capture_rng() -> dict[str, Any]:
    """RNG states of python, numpy, torch (and CUDA when present).

    Every value is a tensor, a container or a plain value, so a checkpoint holding it loads
    with `torch.load(weights_only=True)` (numpy's own state tuple holds an ndarray).
    """
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    _set_numpy_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state() -> dict[str, Any]:
    """`np.random.get_state()` as plain values; the uint32 keys go into an int64 tensor
    (exact: every uint32 fits)."""
    algorithm, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    return {
        "algorithm": str(algorithm),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }


def _set_numpy_state(state: Any) -> None:
    """Inverse of `_numpy_state`; also takes the raw tuple older checkpoints hold."""
    if not isinstance(state, Mapping):
        np.random.set_state(state)
        return
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state(
        (state["algorithm"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"])
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
