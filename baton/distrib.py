"""Distributed helpers that do nothing on a single process.

Every function here is safe to call without `torch.distributed` initialised, so solver code is
written once and runs the same on a laptop, under `torchrun`, and under SLURM.
"""

from __future__ import annotations

import functools
import gc
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

F = TypeVar("F", bound=Callable[..., Any])


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    for key in ("LOCAL_RANK", "SLURM_LOCALID"):
        if key in os.environ:
            return int(os.environ[key])
    return 0


def resolve_rank(given_rank: int | None, given_world: int | None) -> tuple[int, int]:
    """(rank, world size): the given ones, else the process group's; checked for consistency."""
    this_rank = rank() if given_rank is None else given_rank
    world = world_size() if given_world is None else given_world
    if not 0 <= this_rank < world:
        raise ValueError(f"rank {this_rank} is outside world size {world}")
    return this_rank, world


def is_rank_zero() -> bool:
    return rank() == 0


def init(backend: str | None = None) -> bool:
    """Join the process group described by the environment (torchrun, or SLURM's srun).

    Returns True when running distributed. A single process (no WORLD_SIZE, or WORLD_SIZE=1)
    stays un-initialised so nothing pays for a process group it does not need.
    """
    if is_distributed():
        return True
    env = os.environ
    if "WORLD_SIZE" not in env and "SLURM_NTASKS" in env and "MASTER_ADDR" in env:
        env["WORLD_SIZE"] = env["SLURM_NTASKS"]
        env["RANK"] = env["SLURM_PROCID"]
        env.setdefault("LOCAL_RANK", env.get("SLURM_LOCALID", "0"))
    if int(env.get("WORLD_SIZE", "1")) <= 1:
        return False
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend)
    return True


def shutdown(*, in_step: bool = True) -> None:
    """Leave the process group before the process exits.

    Exiting with gloo's threads still up can abort the process (SIGABRT) instead of exiting
    with its own code, which a launcher then misreads. `in_step`: all ranks got here together
    (a finished run, or a stop they agreed on), so a barrier first lets no rank tear down while
    another still talks; after a crash on one rank there is no barrier, as it would never return.
    """
    if not is_distributed():
        return
    if in_step:
        dist.barrier()
    # A solver is freed by the garbage collector (its components point back at it), and with it
    # its DDP wrappers, whose reducers hold the process group: freed after the group is destroyed,
    # at interpreter exit, their threads abort the process ("terminate called without an active
    # exception"). Collect first.
    gc.collect()
    dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def _reduce_device() -> torch.device:
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: Iterable[float]) -> list[float]:
    """Sum a list of floats across ranks in one collective (float64, so counts stay exact)."""
    return _all_reduce(values, "SUM")


def all_reduce_max(values: Iterable[float]) -> list[float]:
    """Element-wise max across ranks (e.g. "did any rank get a stop signal?")."""
    return _all_reduce(values, "MAX")


def _all_reduce(values: Iterable[float], op: str) -> list[float]:
    values = list(values)
    if not is_distributed() or not values:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op))
    return tensor.cpu().tolist()


def average_metrics(metrics: Mapping[str, float], count: float = 1.0) -> dict[str, float]:
    """Average a metrics dict over ranks, each rank weighted by `count` (e.g. its sample count).

    Every rank must pass the same keys in the same order; a mismatch is a bug that would
    otherwise deadlock or silently mix metrics, so it is checked.
    """
    if not is_distributed():
        return dict(metrics)
    keys = sorted(metrics)
    check_same_on_all_ranks(keys, "metric names")
    sums = all_reduce_sum([float(metrics[k]) * count for k in keys] + [count])
    total = sums[-1]
    return {k: s / total for k, s in zip(keys, sums[:-1], strict=False)}


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (a one-element list on a single process)."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def check_same_on_all_ranks(value: Any, what: str) -> None:
    """Raise on every rank when ranks disagree on `value` (guards against collective deadlocks)."""
    if not is_distributed():
        return
    gathered = all_gather_object(value)
    if any(other != gathered[0] for other in gathered):
        raise RuntimeError(f"ranks disagree on {what}: {gathered}")


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def rank_zero_only(fn: F) -> F:
    """Run `fn` on rank 0 only; other ranks get None."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if is_rank_zero():
            return fn(*args, **kwargs)
        return None

    return wrapper  # type: ignore[return-value]


def run_on_main(
    func: Callable[..., Any],
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    post_func: Callable[..., Any] | None = None,
    post_args: Sequence[Any] | None = None,
    post_kwargs: Mapping[str, Any] | None = None,
    run_post_on_main: bool = False,
) -> Any:
    """SpeechBrain's helper: run `func` on rank 0 (e.g. data preparation that writes files)
    while the others wait, then `post_func` on the other ranks (also on rank 0 when
    `run_post_on_main`), e.g. to read what rank 0 wrote. Returns `func`'s result on rank 0."""
    init()  # under torchrun, join the group first: otherwise every process would think it is rank 0
    result = None
    if is_rank_zero():
        result = func(*(args or ()), **(kwargs or {}))
    barrier()
    if post_func is not None:
        if run_post_on_main or not is_rank_zero():
            post_func(*(post_args or ()), **(post_kwargs or {}))
        barrier()
    return result


def ddp_init_group(run_opts: Mapping[str, Any]) -> bool:
    """SpeechBrain's `sb.utils.distributed.ddp_init_group(run_opts)`: join the process group
    torchrun (or srun) describes, with `run_opts["distributed_backend"]` (gloo on CPU). A Brain
    does this itself; recipes that call it first keep working."""
    backend = run_opts.get("distributed_backend")
    if not str(run_opts.get("device", "cpu")).startswith("cuda"):
        backend = "gloo"
    return init(backend)
