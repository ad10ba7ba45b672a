"""Sharded checkpoints: the sharded tensors of an FSDP run, written by every rank through
`torch.distributed.checkpoint` (DCP), under the promises of `baton.checkpoint`.

Layout in an XP folder:
  checkpoint.th           the commit point, as for every run: the header, and the state with
                          each sharded tensor replaced by a placeholder {SHARD: key, shape, dtype}
  shards/<name>/          a DCP folder (.metadata + one __<rank>_0.distcp per rank) holding the
                          sharded tensors by key; never written again once complete

Why it stays safe:
- atomic: ranks write into `shards/.<name>.tmp/`; once DCP has written its metadata (after
  every rank finished), rank 0 fsyncs the folder, renames it, and only then atomically replaces
  `checkpoint.th`, which names it. A kill before that rename leaves the previous checkpoint.th
  pointing at the previous, complete folder. Folders that no checkpoint file names are removed
  after each commit (and stale temporary ones on restore).
- data, not code: DCP reads its `.metadata` with `pickle.load` and non-tensor items with
  `torch.load(weights_only=False)`. baton reads `.metadata` with an unpickler that builds DCP's
  own metadata classes and nothing else, and refuses any non-tensor item (baton writes none:
  every value that is not a sharded tensor is in checkpoint.th, loaded with weights_only).
- world-size-free: the tensors are stored whole by key (DCP records each shard's offsets), so a
  folder written by N ranks loads on M ranks (each reads its new shard), or on one process with
  no process group at all (whole tensors, for `baton export` and `//sig/` references).
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import pickle
import secrets
import shutil
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from . import distrib
from .atomic import fsync_dir
from .errors import CheckpointError, UnsafeCheckpointError, mount_point, write_failure
from .stateful import is_dtensor

logger = logging.getLogger(__name__)

SHARDS = "shards"
SHARD = "__baton_shard__"  # a placeholder's marker key in checkpoint.th's state

Placeholder = dict[str, Any]
Twin = Callable[[tuple[Any, ...]], Any]


def holds_shards(state: Any) -> bool:
    """Whether any tensor in the (nested) state is sharded: then it is saved through DCP."""
    if is_dtensor(state):
        return True
    if isinstance(state, Mapping):
        return any(holds_shards(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return any(holds_shards(v) for v in state)
    return False


def split(state: Any, path: tuple[Any, ...] = ()) -> tuple[Any, dict[str, torch.Tensor]]:
    """(the state with each DTensor replaced by a placeholder, {key: DTensor}). The key is the
    JSON of its path, so it names the same entry on every world size."""
    if is_dtensor(state):
        key = json.dumps(list(path))
        placeholder = {SHARD: key, "shape": list(state.shape), "dtype": str(state.dtype).removeprefix("torch.")}
        return placeholder, {key: state}
    tensors: dict[str, torch.Tensor] = {}
    if isinstance(state, Mapping):
        out = {}
        for k, v in state.items():
            out[k], found = split(v, (*path, k))
            tensors.update(found)
        return type(state)(out) if type(state) is not dict else out, tensors  # type: ignore[call-arg]
    if isinstance(state, (list, tuple)):
        items = []
        for i, v in enumerate(state):
            item, found = split(v, (*path, i))
            items.append(item)
            tensors.update(found)
        return type(state)(items), tensors
    return state, tensors


def placeholders(skeleton: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Placeholder]]:
    """(path, placeholder) for every sharded entry of a saved skeleton."""
    if isinstance(skeleton, Mapping):
        if SHARD in skeleton:
            return [(path, dict(skeleton))]
        return [found for k, v in skeleton.items() for found in placeholders(v, (*path, k))]
    if isinstance(skeleton, (list, tuple)):
        return [found for i, v in enumerate(skeleton) for found in placeholders(v, (*path, i))]
    return []


def filled(skeleton: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """The skeleton with each placeholder replaced by its loaded tensor."""
    if isinstance(skeleton, Mapping):
        if SHARD in skeleton:
            return tensors[skeleton[SHARD]]
        return type(skeleton)((k, filled(v, tensors)) for k, v in skeleton.items())  # type: ignore[call-arg]
    if isinstance(skeleton, (list, tuple)):
        return type(skeleton)(filled(v, tensors) for v in skeleton)
    return skeleton


# ----------------------------------------------------------------------------- writing
def new_folder_name(update: int) -> str:
    """`<update>-<random>`, the same on every rank (rank 0 draws it). Collective."""
    return str(distrib.broadcast_object(f"{update:09d}-{secrets.token_hex(4)}"))


def write_shards(tensors: Mapping[str, torch.Tensor], xp_folder: Path, name: str) -> str:
    """Write the sharded tensors of every rank into `shards/<name>/`; returns that folder's
    path relative to `xp_folder`, complete on disk when this returns. Collective.

    Raises:
        CheckpointError: the write failed (disk full, permissions); nothing refers to the folder.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException  # a BaseException

    shards = Path(xp_folder) / SHARDS
    temporary, final = shards / f".{name}.tmp", shards / name
    try:
        if distrib.is_rank_zero():
            temporary.mkdir(parents=True, exist_ok=True)
        distrib.barrier()
        dcp.save(dict(tensors), storage_writer=dcp.FileSystemWriter(temporary, sync_files=True))
        failed = None
    except (OSError, RuntimeError, CheckpointException) as exc:  # every rank alike: DCP gathers failures
        failed = _cause(exc)
    if failed is not None:
        why = _why(failed, shards, tensors)  # before the partial folder is removed: a full disk still shows
        distrib.barrier()  # every rank failed alike (DCP gathers failures): all have looked
        if distrib.is_rank_zero():
            shutil.rmtree(temporary, ignore_errors=True)
        raise CheckpointError(
            f"cannot write sharded checkpoint {temporary}: {why}; "
            "the previous checkpoint is intact: fix that, then run again to resume from it"
        ) from None
    if distrib.is_rank_zero():
        fsync_dir(temporary)
        os.replace(temporary, final)
        fsync_dir(shards)
    distrib.barrier()
    return f"{SHARDS}/{name}"


def _why(exc: BaseException, folder: Path, tensors: Mapping[str, torch.Tensor]) -> str:
    """`write_failure`'s words; a write that failed (DCP says 'unexpected pos', with no errno)
    where less room is left than this rank's shards take is a full disk."""
    if not (isinstance(exc, OSError) and exc.errno is not None):
        needed = sum(t.to_local().numel() * t.element_size() for t in tensors.values())  # type: ignore[attr-defined]
        try:
            if shutil.disk_usage(folder).free < needed:
                return f"{os.strerror(errno.ENOSPC)} ({mount_point(folder)})"
        except OSError:
            pass
    return write_failure(exc, folder)


def prune_shards(xp_folder: Path, keep: set[str]) -> None:
    """Remove the shard folders (and stale temporary ones) that no checkpoint file names."""
    shards = Path(xp_folder) / SHARDS
    if not shards.is_dir():
        return
    for path in shards.iterdir():
        if f"{SHARDS}/{path.name}" not in keep and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------- reading
def read_shards(
    skeleton: Any, xp_folder: Path, where: str, *, twin: Twin | None = None, source: str = "",
) -> Any:
    """The saved state: `skeleton` with its placeholders filled from `xp_folder/<where>`.

    Args:
        twin: path -> the live tensor that entry loads into (a DTensor under FSDP: each rank
            then reads its own shard; collective). None, or no twin for an entry: whole tensors,
            read without any process group.
        source: the checkpoint file naming the folder, for errors.
    Raises:
        UnsafeCheckpointError: the folder holds more than tensors and DCP's metadata.
        CheckpointError: the folder is missing, damaged or does not match the checkpoint file.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException  # a BaseException

    folder = Path(xp_folder) / where
    if not (folder / ".metadata").is_file():
        raise CheckpointError(f"{source or 'checkpoint'} names sharded folder {folder}, which is missing or incomplete")
    targets: dict[str, torch.Tensor] = {}
    for path, placeholder in placeholders(skeleton):
        live = twin(path) if twin is not None else None
        dtype = getattr(torch, str(placeholder["dtype"]), None)
        shape = [int(n) for n in placeholder["shape"]]
        if not isinstance(dtype, torch.dtype):
            raise CheckpointError(f"{source} names dtype {placeholder['dtype']!r}; the file is damaged")
        if isinstance(live, torch.Tensor) and list(live.shape) == shape:
            targets[placeholder[SHARD]] = torch.empty_like(live, dtype=dtype)
        else:
            targets[placeholder[SHARD]] = torch.empty(shape, dtype=dtype)
    collective = any(is_dtensor(t) for t in targets.values())
    SafeReader(folder).read_metadata()  # its refusal, on one line, before DCP wraps it in its own report
    try:
        with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
            warnings.simplefilter("ignore", UserWarning)
            dcp.load(targets, storage_reader=SafeReader(folder), planner=SafePlanner(), no_dist=not collective)
    except (UnsafeCheckpointError, CheckpointError):
        raise
    except (Exception, CheckpointException) as exc:  # DCP wraps rank failures in CheckpointException
        inner = _cause(exc)
        if isinstance(inner, (UnsafeCheckpointError, CheckpointError)):
            raise inner from None
        if isinstance(inner, pickle.UnpicklingError) and "weights only" in str(inner).lower():
            raise UnsafeCheckpointError(
                f"sharded checkpoint {folder} is refused: a tensor file in it holds more than tensors, "
                "and unpickling it could run arbitrary code; delete the folder, or run with --clear "
                "to start afresh"
            ) from None
        raise CheckpointError(f"sharded checkpoint {folder} is unreadable ({_first_line(inner)}); "
                              "restore it, or run with --clear to start afresh") from None
    return filled(skeleton, targets)


def _cause(exc: BaseException) -> BaseException:
    """The first rank's own exception inside DCP's CheckpointException."""
    failures = getattr(exc, "failures", None)
    if isinstance(failures, Mapping) and failures:
        first = next(iter(failures.values()))  # (exception, its stack summary)
        first = first[0] if isinstance(first, tuple) and first else first
        return first if isinstance(first, BaseException) else exc
    return exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """What DCP's `.metadata` pickle may ask for: its own metadata classes, torch.Size, dtypes,
    the layout by name, paths. Building them runs no code of the file's choosing."""
    import collections
    import pathlib

    from torch.distributed.checkpoint import filesystem, metadata

    allowed: dict[tuple[str, str], Any] = {}
    for module in (metadata, filesystem):
        for name in ("Metadata", "ChunkStorageMetadata", "TensorStorageMetadata", "BytesStorageMetadata",
                     "TensorProperties", "MetadataIndex", "StorageMeta", "_MEM_FORMAT_ENCODING", "_StorageInfo"):
            if hasattr(module, name):
                allowed[(module.__name__, name)] = getattr(module, name)
    for name in ("PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"):
        allowed[("pathlib", name)] = getattr(pathlib, name)
    allowed[("torch", "Size")] = torch.Size
    allowed[("torch.serialization", "_get_layout")] = torch.serialization._get_layout
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    return allowed


class _MetadataUnpickler(pickle.Unpickler):
    def __init__(self, handle: Any, path: Path) -> None:
        super().__init__(handle)
        self.path = path
        self.allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        found = self.allowed.get((module, name))
        if found is not None:
            return found
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise UnsafeCheckpointError(
            f"sharded checkpoint metadata {self.path} is refused: it asks for {module}.{name}, which is "
            "not part of a checkpoint's metadata, and unpickling it could run arbitrary code; "
            "delete the folder, or run with --clear to start afresh"
        )


def _reader_base() -> Any:
    from torch.distributed.checkpoint import FileSystemReader

    return FileSystemReader


def _planner_base() -> Any:
    from torch.distributed.checkpoint import DefaultLoadPlanner

    return DefaultLoadPlanner


class SafeReader(_reader_base()):  # type: ignore[misc]
    """DCP's file reader, reading `.metadata` as data (see `_MetadataUnpickler`)."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
        from torch.distributed.checkpoint.metadata import Metadata, StorageMeta

        path = Path(self._get_metadata_path(kwargs.get("rank")))
        try:
            with open(path, "rb") as handle:
                found = _MetadataUnpickler(handle, path).load()
        except UnsafeCheckpointError:
            raise
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as exc:
            raise CheckpointError(f"sharded checkpoint metadata {path} is unreadable ({_first_line(exc)})") from None
        if not isinstance(found, Metadata):
            raise CheckpointError(f"sharded checkpoint metadata {path} holds a {type(found).__name__}, not DCP metadata")
        storage_meta = getattr(found, "storage_meta", None) or StorageMeta()
        storage_meta.load_id = self.load_id
        found.storage_meta = storage_meta
        return found


class SafePlanner(_planner_base()):  # type: ignore[misc]
    """DCP's load planner, refusing pickled (non-tensor) items: baton writes none."""

    def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
        raise UnsafeCheckpointError(
            f"sharded checkpoint entry {read_item.dest_index.fqn} holds a pickled object, which baton "
            "never writes there, and unpickling it could run arbitrary code; delete the folder, or "
            "run with --clear to start afresh"
        )
