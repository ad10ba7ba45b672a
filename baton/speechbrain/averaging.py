"""Averaging the weights of several checkpoints (SpeechBrain's `average_checkpoints`)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import load_file
from ..ckpt_folders import Checkpoint
from ..errors import CheckpointError


def average_state_dicts(state_dicts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The average of state dicts: floating-point tensors are averaged (accumulated in at
    least float32, returned in their own dtype); other entries (integer counters such as
    BatchNorm's `num_batches_tracked`, plain values) are taken from the first. Holds at most
    two state dicts in memory at a time."""
    iterator = iter(state_dicts)
    first = next(iterator, None)
    if first is None:
        raise ValueError("no state dicts to average")
    sums = {
        key: value.detach().to(torch.promote_types(value.dtype, torch.float32), copy=True)
        for key, value in first.items()
        if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex())
    }
    count = 1
    with torch.no_grad():
        for state in iterator:
            count += 1
            for key, total in sums.items():
                other = state.get(key)
                if not isinstance(other, torch.Tensor):
                    raise ValueError(f"cannot average '{key}': state dict {count} has no such tensor")
                if other.shape != total.shape:
                    raise ValueError(
                        f"cannot average '{key}': shape {tuple(other.shape)} in state dict {count}, "
                        f"{tuple(total.shape)} in the first"
                    )
                total += other.to(total.device, total.dtype)
    averaged = copy.copy(first)  # keeps an OrderedDict's _metadata, which load_state_dict uses
    result: dict[str, Any] = averaged if isinstance(averaged, dict) else dict(averaged)
    for key, total in sums.items():
        result[key] = (total / count).to(first[key].dtype)
    return result


def safe_parameter_loader(path: Path) -> Any:
    """`average_checkpoints`' default loader: `load_file`, refusing what could run code."""
    hint = "pass parameter_loader=functools.partial(baton.checkpoint.load_file, trusted=True)"
    return load_file(path, trust_hint=hint)


def average_checkpoints(
    checkpoint_list: Iterable[Checkpoint],
    recoverable_name: str,
    parameter_loader: Callable[[Path], Any] = safe_parameter_loader,
    averager: Callable[[Iterator[Any]], Any] = average_state_dicts,
    device: str | torch.device | None = None,
) -> Any:
    """Average one recoverable's parameters over checkpoints (e.g. the last few, from
    `find_checkpoints(max_num_checkpoints=5)`): often a better model than the last one.

    Args:
        parameter_loader: loads one file; by default safely (`weights_only=True`): pass
            `functools.partial(load_file, trusted=True)` for trusted files that need more.
        averager: turns an iterator of loaded parameters into their average.
        device: where the loaded tensors go before averaging (default: the CPU).
    Returns:
        What `averager` returns: by default a state dict for `load_state_dict`.
    """

    def loaded() -> Iterator[Any]:
        for ckpt in checkpoint_list:
            path = ckpt.paramfiles.get(recoverable_name)
            if path is None:
                raise CheckpointError(f"checkpoint {ckpt.path} has no '{recoverable_name}' to average")
            params = parameter_loader(Path(path))
            yield params if device is None else _to_device(params, device)

    return averager(loaded())


def _to_device(value: Any, device: str | torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        moved = copy.copy(value)  # an OrderedDict keeps its _metadata
        for key, item in value.items():
            moved[key] = _to_device(item, device)
        return moved
    return value
