"""SpeechBrain-compatible checkpointing: one folder per checkpoint, one file per recoverable.

A recipe written for `speechbrain.utils.checkpoints` runs unchanged against this module (same
names, arguments and defaults), and the folders it writes are the ones SpeechBrain's tools read:

  <checkpoints_dir>/CKPT+2024-05-01+12-30-05+00/
      CKPT.yaml          the meta: the user's keys, `unixtime` and `end-of-epoch`
      model.ckpt         one file per recoverable, written by its save hook
      optimizer.ckpt

What baton adds, so that a crash or a full disk never costs a good checkpoint:

- A checkpoint is built in a hidden temporary folder next to the others, every file and the
  folder are fsynced, and only then is the folder renamed into place (and `checkpoints_dir`
  fsynced). `list_checkpoints` only sees `CKPT+*` folders holding a `CKPT.yaml`, so a
  half-written checkpoint is never listed, loaded, or counted when old ones are pruned.
- Deleting renames the folder to a hidden name first, then removes it: a crash mid-delete
  leaves nothing half-deleted that looks like a checkpoint. Hidden leftovers of a crashed
  process are removed at the next save.
- Parameter files load with `torch.load(weights_only=True)` (`baton.checkpoint.load_file`):
  a crafted pickle is refused, nothing of it runs, unless the Checkpointer is `trusted`.
- A failed write (no space, no permission) is one `CheckpointError` line naming the place.

Only rank 0 writes and deletes; every rank loads.
"""

from __future__ import annotations

import copy
import errno
import inspect
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import torch
import yaml

from .atomic import fsync_dir, stale_temporaries, temporary_name
from .checkpoint import load_file
from .distrib import is_rank_zero
from .errors import CheckpointError, write_failure, yaml_error_line

logger = logging.getLogger(__name__)

CKPT_PREFIX = "CKPT"
METAFNAME = f"{CKPT_PREFIX}.yaml"
PARAMFILE_EXT = ".ckpt"
TRUST_HINT = "pass Checkpointer(..., trusted=True)"

SaveHook = Callable[[Any, Path], Any]
LoadHook = Callable[[Any, Path, bool], Any]
ImportanceKey = Callable[["Checkpoint"], Any]
Predicate = Callable[["Checkpoint"], bool]
C = TypeVar("C", bound=type)
H = TypeVar("H")
F = TypeVar("F", bound=Callable[..., Any])


class Checkpoint(NamedTuple):
    """One saved checkpoint, as found on disk.

    `path` is the CKPT folder, `meta` the dict of its CKPT.yaml (always with `unixtime` and
    `end-of-epoch`), `paramfiles` maps each recoverable's name to its `<name>.ckpt` file.
    Hashed by path, so checkpoints can be collected in sets (as SpeechBrain's are).
    """

    path: Path
    meta: dict[str, Any]
    paramfiles: dict[str, Path]

    def __hash__(self) -> int:
        return hash(self.path)


def ckpt_recency(ckpt: Checkpoint) -> float:
    """Recency as an importance key: the newest checkpoint ranks highest."""
    return float(ckpt.meta.get("unixtime", 0.0))


# ---------------------------------------------------------------------------------------------
# Hooks: how each kind of object is written to and read from its file.


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


def torch_save(obj: Any, path: Path) -> None:
    """Default save hook: `torch.save` of the object's `state_dict()`."""
    torch.save(_unwrap_module(obj).state_dict(), path)


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
_SAVE_ON_ALL_RANKS: set[Any] = set()


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
                _SAVE_ON_ALL_RANKS.add(saver)
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


def _no_hook_error(what: str, name: str, obj: Any) -> TypeError:
    return TypeError(
        f"don't know how to {what} recoverable '{name}' ({type(obj).__qualname__}): give its class "
        "state_dict()/load_state_dict(), or @register_checkpoint_hooks with @mark_as_saver and "
        "@mark_as_loader methods, or pass custom_save_hooks/custom_load_hooks for it"
    )


# ---------------------------------------------------------------------------------------------
# The Checkpointer.


class Checkpointer:
    """Saves checkpoints of named recoverables, finds them by recency or by a meta key, and
    loads them back.

    Args:
        checkpoints_dir: where the CKPT+... folders go; created at the first save.
        recoverables: name -> object. The name becomes the file name `<name>.ckpt` and ties a
            file back to its object on load.
        custom_load_hooks: name -> `hook(obj, path, end_of_epoch)`, instead of the default.
        custom_save_hooks: name -> `hook(obj, path)`, instead of the default.
        allow_partial_load: load a checkpoint that lacks some recoverables (they keep their
            state, with a warning) and modules whose keys do not all match (strict=False).
        trusted: load parameter files with full unpickling. Only for files from a trusted
            source: a crafted pickle runs arbitrary code when loaded this way.
    """

    def __init__(
        self,
        checkpoints_dir: str | Path,
        recoverables: Mapping[str, Any] | None = None,
        custom_load_hooks: Mapping[str, LoadHook] | None = None,
        custom_save_hooks: Mapping[str, SaveHook] | None = None,
        allow_partial_load: bool = False,
        *,
        trusted: bool = False,
    ) -> None:
        self.checkpoints_dir = Path(checkpoints_dir)
        self.recoverables: dict[str, Any] = {}
        self.optional_recoverables: dict[str, bool] = {}
        self.custom_load_hooks: dict[str, LoadHook] = dict(custom_load_hooks or {})
        self.custom_save_hooks: dict[str, SaveHook] = dict(custom_save_hooks or {})
        self.allow_partial_load = allow_partial_load
        self.trusted = trusted
        if recoverables is not None:
            self.add_recoverables(recoverables)
        # As SpeechBrain's does: recipes write their own files there (a label encoder) early.
        try:
            self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._write_error(exc) from None

    def add_recoverable(
        self,
        name: str,
        obj: Any,
        custom_load_hook: LoadHook | None = None,
        custom_save_hook: SaveHook | None = None,
        optional_load: bool = False,
    ) -> None:
        """Register `obj` under `name`.

        Args:
            optional_load: a checkpoint without this recoverable still loads (with a warning),
                e.g. a GradScaler added when resuming an fp32 run in fp16.
        """
        if not name or "/" in name or os.sep in name:
            raise ValueError(f"recoverable name {name!r} must be a plain file name: it names the file <name>.ckpt")
        self.recoverables[name] = obj
        self.optional_recoverables[name] = optional_load
        if custom_load_hook is not None:
            self.custom_load_hooks[name] = custom_load_hook
        if custom_save_hook is not None:
            self.custom_save_hooks[name] = custom_save_hook

    def add_recoverables(self, recoverables: Mapping[str, Any]) -> None:
        """Register every name -> object of a mapping (e.g. a dict from HyperPyYAML)."""
        if not isinstance(recoverables, Mapping):
            raise TypeError(
                f"Checkpointer recoverables must be a mapping of name -> object, got {type(recoverables).__name__}"
            )
        for name, obj in recoverables.items():
            self.add_recoverable(name, obj)

    # -- saving ------------------------------------------------------------------------------

    def save_checkpoint(
        self,
        meta: Mapping[str, Any] | None = None,
        end_of_epoch: bool = True,
        name: str | None = None,
        verbosity: int = logging.INFO,
    ) -> Checkpoint | None:
        """Write every recoverable into a new checkpoint folder; return it (None off rank 0).

        Args:
            meta: extra keys for CKPT.yaml (e.g. {"loss": 0.3}); tensors and numpy scalars
                are stored as plain numbers. They are what `min_key`/`max_key` select on.
            end_of_epoch: stored in the meta and handed to load hooks, e.g. so an epoch
                counter runs an interrupted epoch again.
            name: the folder becomes `CKPT+<name>` (replacing one of that name) instead of
                `CKPT+<date>+<time>+<NN>`.
        Raises:
            CheckpointError: the checkpoint could not be written (no space, no permission);
                no part of it is listed and earlier checkpoints are intact.
        """
        full_meta = {"unixtime": time.time(), "end-of-epoch": end_of_epoch, **_plain_meta(meta or {})}
        savers = {key: self._save_hook(key, obj) for key, obj in self.recoverables.items()}
        if not is_rank_zero():
            self._run_all_rank_savers(savers)
            return None
        self._prepare_folder()
        final = self.checkpoints_dir / f"{CKPT_PREFIX}+{name}" if name is not None else self._new_dirpath()
        building = temporary_name(final)
        _IN_PROGRESS.add(building)
        try:
            paramfiles = self._write(building, full_meta, savers)
            final = self._move_into_place(building, final, fixed_name=name is not None)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        finally:
            _IN_PROGRESS.discard(building)
        kind = "end-of-epoch" if end_of_epoch else "intra-epoch"
        logger.log(verbosity, "Saved an %s checkpoint in %s", kind, final)
        return Checkpoint(final, full_meta, {key: final / path.name for key, path in paramfiles.items()})

    def _save_hook(self, name: str, obj: Any) -> SaveHook:
        hook = self.custom_save_hooks.get(name) or get_default_hook(obj, DEFAULT_SAVE_HOOKS)
        if hook is None and hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict"):
            hook = torch_save
        if hook is None:
            raise _no_hook_error("save", name, obj)
        return hook

    def _prepare_folder(self) -> None:
        try:
            self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._write_error(exc) from None
        _remove_stale_temporaries(self.checkpoints_dir)

    def _write(self, folder: Path, meta: dict[str, Any], savers: Mapping[str, SaveHook]) -> dict[str, Path]:
        """Fill `folder` (hidden) with the meta and every recoverable's file, all fsynced."""
        paramfiles: dict[str, Path] = {}
        try:
            folder.mkdir()  # 0o777 less the umask: the team reads what we write
            with open(folder / METAFNAME, "w", encoding="utf-8") as handle:
                yaml.safe_dump(meta, handle, sort_keys=False)
            for key, hook in savers.items():
                paramfiles[key] = folder / f"{key}{PARAMFILE_EXT}"
                try:
                    hook(self.recoverables[key], paramfiles[key])
                except RuntimeError as exc:
                    if hook is torch_save:  # torch's zip writer says "disk full" this way
                        raise self._write_error(exc) from None
                    raise
            _fsync_tree(folder)
        except OSError as exc:
            raise self._write_error(exc) from None
        return paramfiles

    def _move_into_place(self, building: Path, final: Path, *, fixed_name: bool) -> Path:
        """Rename the complete folder to its listed name; an automatic name taken meanwhile
        moves on to the next number, a fixed name replaces the older checkpoint of that name."""
        while True:
            try:
                os.rename(building, final)
                break
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise self._write_error(exc) from None
            if not fixed_name:
                final = self._new_dirpath()
                continue
            try:
                self._discard(final)
            except OSError as exc:
                raise self._write_error(exc) from None
        fsync_dir(self.checkpoints_dir)
        return final

    def _new_dirpath(self) -> Path:
        stamp = time.strftime("%Y-%m-%d+%H-%M-%S", time.localtime())
        number = 0
        while (path := self.checkpoints_dir / f"{CKPT_PREFIX}+{stamp}+{number:02d}").exists():
            number += 1
        return path

    def _write_error(self, exc: BaseException) -> CheckpointError:
        return CheckpointError(
            f"cannot write a checkpoint in {self.checkpoints_dir}: "
            f"{write_failure(exc, _existing(self.checkpoints_dir))}; earlier checkpoints are "
            "intact: free space or fix the permissions, then save again"
        )

    def _run_all_rank_savers(self, savers: Mapping[str, SaveHook]) -> None:
        """Off rank 0: join the savers that every rank must run, writing into a scratch folder
        (rank 0 writes the real files)."""
        joined = {key: hook for key, hook in savers.items() if hook in _SAVE_ON_ALL_RANKS}
        if not joined:
            return
        with tempfile.TemporaryDirectory() as scratch:
            for key, hook in joined.items():
                hook(self.recoverables[key], Path(scratch) / f"{key}{PARAMFILE_EXT}")

    def save_and_keep_only(
        self,
        meta: Mapping[str, Any] | None = None,
        end_of_epoch: bool = True,
        name: str | None = None,
        num_to_keep: int = 1,
        keep_recent: bool = True,
        importance_keys: Sequence[ImportanceKey] = (),
        max_keys: Sequence[str] = (),
        min_keys: Sequence[str] = (),
        ckpt_predicate: Predicate | None = None,
        verbosity: int = logging.INFO,
    ) -> None:
        """Save a checkpoint, then delete those no criterion keeps.

        Kept: for each of `max_keys`, `min_keys` and `importance_keys` (and recency when
        `keep_recent`), the best `num_to_keep` checkpoints by it. Only checkpoints passing
        `ckpt_predicate` are ranked or deleted: e.g. `lambda c: "flag" in c.meta` prunes
        intra-epoch checkpoints without touching end-of-epoch ones. Returns nothing, like
        SpeechBrain's: the new checkpoint may itself be ranked out.
        """
        self.save_checkpoint(meta=meta, end_of_epoch=end_of_epoch, name=name, verbosity=verbosity)
        keys = [*importance_keys, ckpt_recency] if keep_recent else list(importance_keys)
        self.delete_checkpoints(
            num_to_keep=num_to_keep,
            min_keys=min_keys,
            max_keys=max_keys,
            importance_keys=keys,
            ckpt_predicate=ckpt_predicate,
            verbosity=verbosity,
        )

    # -- finding and loading -----------------------------------------------------------------

    def list_checkpoints(self) -> list[Checkpoint]:
        """Every complete checkpoint in `checkpoints_dir` (a `CKPT+*` folder with a CKPT.yaml),
        in no particular order.

        Raises:
            CheckpointError: a CKPT.yaml that is not a YAML mapping (fix or remove the folder).
        """
        if not self.checkpoints_dir.is_dir():
            return []
        found = []
        for folder in self.checkpoints_dir.iterdir():
            if not folder.name.startswith(f"{CKPT_PREFIX}+"):
                continue
            checkpoint = _read_checkpoint_folder(folder)
            if checkpoint is not None:
                found.append(checkpoint)
        return found

    def find_checkpoints(
        self,
        importance_key: ImportanceKey | None = None,
        max_key: str | None = None,
        min_key: str | None = None,
        ckpt_predicate: Predicate | None = None,
        max_num_checkpoints: int | None = None,
    ) -> list[Checkpoint]:
        """Checkpoints best first: by `importance_key` (highest first), the highest `max_key`
        or the lowest `min_key` in the meta, else the most recent. With a meta key, only
        checkpoints that have it are candidates. Ties go to the more recent checkpoint.
        """
        if sum(key is not None for key in (importance_key, max_key, min_key)) > 1:
            raise ValueError("give at most one of importance_key, max_key and min_key")
        has_key = max_key if max_key is not None else min_key
        if max_key is not None:
            importance_key = _meta_value(max_key, sign=1)
        elif min_key is not None:
            importance_key = _meta_value(min_key, sign=-1)
        elif importance_key is None:
            importance_key = ckpt_recency
        candidates = [
            ckpt for ckpt in self.list_checkpoints()
            if (has_key is None or has_key in ckpt.meta)
            and (ckpt_predicate is None or ckpt_predicate(ckpt))
        ]
        candidates.sort(key=_recency_order, reverse=True)
        ranked = sorted(candidates, key=importance_key, reverse=True)  # stable: ties stay newest first
        return ranked if max_num_checkpoints is None else ranked[:max_num_checkpoints]

    def find_checkpoint(
        self,
        importance_key: ImportanceKey | None = None,
        max_key: str | None = None,
        min_key: str | None = None,
        ckpt_predicate: Predicate | None = None,
    ) -> Checkpoint | None:
        """The best checkpoint by `find_checkpoints`' order, or None when there is none."""
        found = self.find_checkpoints(importance_key, max_key, min_key, ckpt_predicate)
        return found[0] if found else None

    def recover_if_possible(
        self,
        importance_key: ImportanceKey | None = None,
        max_key: str | None = None,
        min_key: str | None = None,
        ckpt_predicate: Predicate | None = None,
    ) -> Checkpoint | None:
        """Load the checkpoint `find_checkpoint` picks and return it; None (nothing loaded)
        when there is none yet, e.g. at the start of training."""
        checkpoint = self.find_checkpoint(importance_key, max_key, min_key, ckpt_predicate)
        if checkpoint is None:
            logger.info("No checkpoint found in %s: starting from scratch", self.checkpoints_dir)
            return None
        self.load_checkpoint(checkpoint)
        return checkpoint

    def load_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Call every recoverable's load hook with its file in `checkpoint`.

        Raises:
            CheckpointError: a recoverable has no file in the checkpoint (unless partial loads
                are allowed or it is optional), or a file is unreadable or does not fit.
            UnsafeCheckpointError: a file would need `trusted=True` to load.
        """
        logger.info("Loading a checkpoint from %s", checkpoint.path)
        end_of_epoch = bool(checkpoint.meta.get("end-of-epoch", True))
        for key, obj in self.recoverables.items():
            path = checkpoint.paramfiles.get(key)
            if path is None:
                if self.allow_partial_load or self.optional_recoverables.get(key, False):
                    logger.warning("checkpoint %s has no '%s': it keeps its current state", checkpoint.path, key)
                    continue
                raise CheckpointError(
                    f"checkpoint {checkpoint.path} has no '{key}' ({key}{PARAMFILE_EXT}); load it with "
                    "add_recoverable(..., optional_load=True) or Checkpointer(..., allow_partial_load=True)"
                )
            self._load_one(key, obj, Path(path), end_of_epoch)

    def _load_one(self, key: str, obj: Any, path: Path, end_of_epoch: bool) -> None:
        hook = self.custom_load_hooks.get(key) or get_default_hook(obj, DEFAULT_LOAD_HOOKS)
        stateful = hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")
        if hook is torch_recovery or (hook is None and stateful):
            # The default hook learns this Checkpointer's choices: trust, and strictness.
            torch_recovery(obj, path, end_of_epoch, trusted=self.trusted, strict=not self.allow_partial_load)
        elif hook is not None:
            hook(obj, path, end_of_epoch)
        else:
            raise _no_hook_error("load", key, obj)

    # -- deleting ----------------------------------------------------------------------------

    def delete_checkpoints(
        self,
        *,
        num_to_keep: int = 1,
        min_keys: Sequence[str] | None = None,
        max_keys: Sequence[str] | None = None,
        importance_keys: Sequence[ImportanceKey] = (ckpt_recency,),
        ckpt_predicate: Predicate | None = None,
        verbosity: int = logging.INFO,
    ) -> None:
        """Delete the checkpoints that none of the criteria keeps among its best `num_to_keep`.

        Each of `min_keys`, `max_keys` and `importance_keys` is one criterion; a checkpoint
        is a candidate for deletion only if it passes `ckpt_predicate` and is ranked by some
        criterion (a min/max key ranks only checkpoints that have it). Rank 0 only.
        """
        if num_to_keep < 0:
            raise ValueError(f"num_to_keep must be >= 0, got {num_to_keep}")
        if not is_rank_zero():
            return
        criteria: list[dict[str, Any]] = [{"min_key": key} for key in min_keys or ()]
        criteria += [{"max_key": key} for key in max_keys or ()]
        criteria += [{"importance_key": key} for key in importance_keys]
        candidates: dict[Path, Checkpoint] = {}
        kept: set[Path] = set()
        for criterion in criteria:
            ranked = self.find_checkpoints(ckpt_predicate=ckpt_predicate, **criterion)
            candidates.update((ckpt.path, ckpt) for ckpt in ranked)
            kept.update(ckpt.path for ckpt in ranked[:num_to_keep])
        for path in sorted(set(candidates) - kept):
            self._discard(path)
            logger.log(verbosity, "Deleted checkpoint in %s", path)

    def _discard(self, folder: Path) -> None:
        """Rename a checkpoint folder out of sight, then remove it: never half a checkpoint."""
        hidden = temporary_name(folder)
        try:
            os.rename(folder, hidden)
        except FileNotFoundError:
            return
        fsync_dir(folder.parent)
        shutil.rmtree(hidden, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Helpers.

# Hidden folders this process is building right now: not stale, whatever their name says.
_IN_PROGRESS: set[Path] = set()
_TEMPORARY_PID = re.compile(r"\.(\d+)\.[0-9a-f]+\.tmp$")


def _remove_stale_temporaries(folder: Path) -> None:
    """Remove hidden checkpoint folders left by a crashed save or delete: those of a dead
    process, or of this process's pid (a restarted container) that it is not building now."""
    for path in stale_temporaries(folder, f"{CKPT_PREFIX}+*"):
        found = _TEMPORARY_PID.search(path.name)
        if path in _IN_PROGRESS or (found and _process_alive(int(found.group(1)))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours and not in progress: left by an earlier process with our pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    return True


def _fsync_tree(folder: Path) -> None:
    """fsync every file under `folder` (savers may write files of their own), then the folders."""
    for root, _dirs, files in os.walk(folder):
        for file in files:
            fd = os.open(os.path.join(root, file), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(root))


def _existing(path: Path) -> Path:
    """`path` or its nearest existing parent (what `write_failure` can measure)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _plain_meta(value: Any, key: str = "meta") -> Any:
    """`value` as plain YAML data: tensors and numpy values become numbers or lists, tuples
    lists; anything else that YAML cannot hold without running code on load is refused."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalars and arrays
        return value.item() if getattr(value, "size", 1) == 1 else value.tolist()
    if isinstance(value, Mapping):
        return {k: _plain_meta(v, f"{key}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_meta(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"checkpoint {key} is a {type(value).__qualname__}, which CKPT.yaml cannot hold; "
        "pass a number, string, bool, list or dict"
    )


def _read_checkpoint_folder(folder: Path) -> Checkpoint | None:
    """The checkpoint in `folder`, or None when it is not one (or was just deleted)."""
    meta_path = folder / METAFNAME
    try:
        with open(meta_path, encoding="utf-8") as handle:  # errors then name the file
            meta = yaml.safe_load(handle)
        files = list(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{yaml_error_line(exc)} or delete {folder}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_path} is not a YAML mapping; fix it or delete {folder}")
    paramfiles = {path.stem: path for path in files if path.suffix == PARAMFILE_EXT}
    return Checkpoint(folder, meta, paramfiles)


def _recency_order(ckpt: Checkpoint) -> tuple[float, list[Any]]:
    """Newest by unixtime; equal times by folder name, numbers compared as numbers (+100 > +99)."""
    name = [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", ckpt.path.name)]
    return ckpt_recency(ckpt), name


def _meta_value(key: str, *, sign: int) -> ImportanceKey:
    def value(ckpt: Checkpoint) -> Any:
        return sign * ckpt.meta[key]

    return value


# ---------------------------------------------------------------------------------------------
# Averaging.


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
