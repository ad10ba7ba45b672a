"""What `baton check-resume` records of a training run, from inside the training process.

`UpdateRecorder` is the loop's update observer (`baton.solver.loop.UpdateObserver`) for one run
of the check: after every update it writes one JSON line with the data position the update
started from, a digest of its micro-batches, its losses, the learning rates, and a digest of
every tensor of the solver's state, registered or not. At the update it was told to, it stops
the run the way a preemption does (a real SIGTERM to its own process) or kills it (SIGKILL).

Digests are blake2b over a tensor's bytes, dtype and shape, so two runs compare equal only
when bit for bit equal. Nothing here runs unless the check installs the recorder.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from baton.stateful import unwrap

# Leaves written as they are (compared by value); any other object is walked through its
# __dict__ when it has one, else recorded by its type's name.
_PLAIN = (str, int, float, bool, type(None))
MAX_DEPTH = 32


def tensor_digest(tensor: torch.Tensor) -> str:
    """A short digest of a tensor's exact bits, dtype and shape (of this rank's shard under
    FSDP: each rank records its own, and runs are compared at one world size)."""
    to_local = getattr(tensor, "to_local", None)
    if to_local is not None:
        tensor = to_local()
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    raw = flat.view(torch.uint8) if flat.numel() and flat.dtype != torch.uint8 else flat
    header = f"{tensor.dtype}:{tuple(tensor.shape)}:".encode()
    return hashlib.blake2b(header + raw.numpy().tobytes(), digest_size=8).hexdigest()


def leaves(value: Any, path: str = "", depth: int = 0) -> Iterator[tuple[str, Any]]:
    """(dotted path, comparable leaf) for everything in a state dict, a batch or a history:
    tensors and arrays become digests, plain values stay as they are. Past MAX_DEPTH levels
    (an object that refers back to itself) only the type's name is kept."""
    if depth > MAX_DEPTH:
        yield path, f"<{type(value).__name__}>"
    elif isinstance(value, torch.Tensor):
        yield path, tensor_digest(value)
    elif isinstance(value, np.ndarray):
        yield path, tensor_digest(torch.from_numpy(np.ascontiguousarray(value)))
    elif isinstance(value, _PLAIN):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}" if path else str(key), depth + 1)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from leaves(item, f"{path}.{index}" if path else str(index), depth + 1)
    elif hasattr(value, "__dict__") and not callable(value):
        yield from leaves(vars(value), path, depth + 1)
    else:
        yield path, f"<{type(value).__name__}>"


def digest_of(value: Any) -> str:
    """One digest for a whole structure (a batch)."""
    text = json.dumps(list(leaves(value)), default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def registered_objects(solver: Any) -> dict[str, Any]:
    """What a checkpoint of `solver` holds, by name: its registered attributes, and for a Brain
    the recoverables of its Checkpointer (the Brain itself is its loop state, recorded apart)."""
    found = {name: solver.stateful.get(name) for name in solver.stateful}
    checkpointer = getattr(solver, "checkpointer", None)
    for name, value in (getattr(checkpointer, "recoverables", None) or {}).items():
        if value is not solver:
            found.setdefault(name, value)
    return found


def _covered_ids(solver: Any, registered: Mapping[str, Any]) -> set[int]:
    """Objects whose state a checkpoint holds: the registered ones and what they contain."""
    covered: set[int] = set()
    inside = [*registered.values(), *solver.steppers()]
    if solver.ema is not None:
        inside += list(solver.ema.modules.values())
    for value in inside:
        value = unwrap(value)
        covered.add(id(value))
        if isinstance(value, nn.Module):
            covered.update(id(m) for m in value.modules())
        for part in ("optimizer", "scheduler", "scaler"):  # a GradientStepper's
            if getattr(value, part, None) is not None and not isinstance(value, nn.Module):
                covered.add(id(getattr(value, part)))
        held = getattr(value, "modules", None)  # a GradientStepper's list of modules
        for module in held if isinstance(held, (list, tuple)) else []:
            covered.update(id(m) for m in unwrap(module).modules())
    return covered


def unregistered_state(solver: Any, registered: Mapping[str, Any]) -> dict[str, Any]:
    """State held by the solver's attributes that no checkpoint holds: modules (their tensors
    outside registered modules), optimizers, LR schedulers and tensors, by `attribute.key`."""
    covered = _covered_ids(solver, registered)
    state: dict[str, Any] = {}
    for name, value in vars(solver).items():
        value = unwrap(value)
        if id(value) in covered:
            continue
        if isinstance(value, torch.Tensor):
            state[name] = value
        elif isinstance(value, nn.Module):
            own = {f"{prefix}.{key}" if prefix else key: tensor
                   for prefix, module in value.named_modules() if id(module) not in covered
                   for key, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]}
            if own:
                state[name] = own
        elif isinstance(value, (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)):
            state[name] = value.state_dict()
    return state


def class_names(solver: Any, names: Any) -> dict[str, str]:
    """Attribute name -> the class of its value, for the diagnosis' wording."""
    return {name: type(unwrap(getattr(solver, name))).__name__ for name in names}


def learning_rates(solver: Any, registered: Mapping[str, Any]) -> dict[str, list[float]]:
    """The LR of each parameter group of every optimizer the solver holds, by name."""
    rates: dict[str, list[float]] = {}
    named = [*registered.items(), *vars(solver).items()]
    named += [(stepper.name or f"stepper_{index}", stepper) for index, stepper in enumerate(solver.steppers())]
    for name, value in named:
        optimizer = value if isinstance(value, torch.optim.Optimizer) else getattr(value, "optimizer", None)
        if isinstance(optimizer, torch.optim.Optimizer) and name not in rates:
            rates[name] = [float(group["lr"]) for group in optimizer.param_groups]
    return rates


def update_losses(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, float]:
    """Each metric's mean over one update, from the stage's running sums before and after it."""
    losses = {}
    for key, total in after["sums"].items():
        count = after["counts"][key] - before["counts"].get(key, 0.0)
        if count:
            losses[key] = (total - before["sums"].get(key, 0.0)) / count
    return losses


def solver_snapshot(solver: Any) -> dict[str, Any]:
    """Digests of everything that shapes the rest of training, by part: the verdict's rows."""
    registered = registered_objects(solver)
    state = {name: value.state_dict() if hasattr(value, "state_dict") else value for name, value in registered.items()}
    modules = {n: s for n, s in state.items() if isinstance(unwrap(registered[n]), nn.Module)}
    return {
        "weights": dict(leaves(modules)),
        "optimizers": dict(leaves({n: s for n, s in state.items() if n not in modules})),
        "ema": dict(leaves(solver.ema.state_dict() if solver.ema is not None else {})),
        "best": dict(leaves(solver.best.state_dict())),
        "history": dict(leaves(solver.history)),
        "update": solver.update_count,
    }


class UpdateRecorder:
    """The loop's observer for one run of the check: one JSON line per update, and the stop.

    Args:
        records: the JSON-lines file to append to (a resumed run appends after its first part).
        stop_at: send this process SIGTERM at the end of this update (a preemption).
        kill_at: SIGKILL this process at the end of this update (a crash).
    """

    def __init__(self, records: Path, stop_at: int | None = None, kill_at: int | None = None) -> None:
        self.stop_at = stop_at
        self.kill_at = kill_at
        self._file: IO[str] = open(records, "a", encoding="utf-8")  # noqa: SIM115  (closed by close())
        self._pending: dict[str, Any] = {}
        self._metrics_before: dict[str, Any] = {}

    def drawn(self, solver: Any, update: Any, position: dict[str, int] | None) -> None:
        self._metrics_before = solver.stage_metrics.state_dict()
        self._pending = {
            "position": [position["epoch"], position["position"]] if position else None,
            "batch": digest_of(update.batches),
        }

    def ended(self, solver: Any) -> None:
        registered = registered_objects(solver)
        state = {name: value.state_dict() if hasattr(value, "state_dict") else value for name, value in registered.items()}
        if solver.ema is not None:
            state["<ema>"] = solver.ema.state_dict()
        record = {
            "update": solver.update_count,
            "epoch": solver.epoch,
            **self._pending,
            "losses": update_losses(self._metrics_before, solver.stage_metrics.state_dict()),
            "lr": learning_rates(solver, registered),
            "state": dict(leaves(state)),
        }
        unregistered = unregistered_state(solver, registered)
        record["unregistered"] = dict(leaves(unregistered))
        record["classes"] = class_names(solver, unregistered)
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if solver.update_count == self.kill_at:
            os.fsync(self._file.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        if solver.update_count == self.stop_at:
            # A real signal through the engine's handler: the flag is set before the cadence
            # reads it, so the loop saves and stops at this very update.
            os.kill(os.getpid(), signal.SIGTERM)

    def close(self) -> None:
        self._file.close()


def read_records(path: Path) -> dict[int, dict[str, Any]]:
    """Update number -> its record; a later line for the same update (redone after a resume
    from an earlier checkpoint) replaces the earlier one."""
    records: dict[int, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                records[record["update"]] = record
    return records
