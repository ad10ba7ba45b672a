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

import errno
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from ..atomic import fsync_dir, temporary_name
from ..ckpt_folders import (
    CKPT_PREFIX,
    IN_PROGRESS,
    META_TENSORS,
    METAFNAME,
    PARAMFILE_EXT,
    Checkpoint,
    ImportanceKey,
    Predicate,
    ckpt_recency,
    existing_parent,
    fsync_tree,
    list_checkpoint_folders,
    meta_tensors,
    plain_meta,
    put_back_tensors,
    rank_checkpoints,
    remove_stale_checkpoint_folders,
)
from ..distrib import is_rank_zero
from ..errors import CheckpointError, MissingRecoverableError, write_failure
from .hooks import (
    DEFAULT_LOAD_HOOKS,
    DEFAULT_SAVE_HOOKS,
    SAVE_ON_ALL_RANKS,
    LoadHook,
    SaveHook,
    get_default_hook,
    holds_shards,
    no_hook_error,
    torch_recovery,
    torch_save,
)

logger = logging.getLogger("baton.checkpointer")


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
                are stored as plain numbers, and tensors also as data beside it
                (CKPT.tensors.pt), so the meta read back holds them as tensors. They are what
                `min_key`/`max_key` select on.
            end_of_epoch: stored in the meta and handed to load hooks, e.g. so an epoch
                counter runs an interrupted epoch again.
            name: the folder becomes `CKPT+<name>` (replacing one of that name) instead of
                `CKPT+<date>+<time>+<NN>`.
        Raises:
            CheckpointError: the checkpoint could not be written (no space, no permission);
                no part of it is listed and earlier checkpoints are intact.
        """
        full_meta = {"unixtime": time.time(), "end-of-epoch": end_of_epoch, **plain_meta(meta or {})}
        tensors = meta_tensors(dict(meta or {}))
        savers = {key: self._save_hook(key, obj) for key, obj in self.recoverables.items()}
        if not is_rank_zero():
            self._run_all_rank_savers(savers)
            return None
        self._prepare_folder()
        final = self.checkpoints_dir / f"{CKPT_PREFIX}+{name}" if name is not None else self._new_dirpath()
        building = temporary_name(final)
        IN_PROGRESS.add(building)
        try:
            paramfiles = self._write(building, full_meta, savers, tensors)
            final = self._move_into_place(building, final, fixed_name=name is not None)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        finally:
            IN_PROGRESS.discard(building)
        kind = "end-of-epoch" if end_of_epoch else "intra-epoch"
        logger.log(verbosity, "Saved an %s checkpoint in %s", kind, final)
        put_back_tensors(full_meta, tensors, final)
        return Checkpoint(final, full_meta, {key: final / path.name for key, path in paramfiles.items()})

    def _save_hook(self, name: str, obj: Any) -> SaveHook:
        hook = self.custom_save_hooks.get(name) or get_default_hook(obj, DEFAULT_SAVE_HOOKS)
        if hook is None and hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict"):
            hook = torch_save
        if hook is None:
            raise no_hook_error("save", name, obj)
        return hook

    def _prepare_folder(self) -> None:
        try:
            self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._write_error(exc) from None
        remove_stale_checkpoint_folders(self.checkpoints_dir)

    def _write(self, folder: Path, meta: dict[str, Any], savers: Mapping[str, SaveHook],
               tensors: Mapping[str, torch.Tensor]) -> dict[str, Path]:
        """Fill `folder` (hidden) with the meta and every recoverable's file, all fsynced."""
        paramfiles: dict[str, Path] = {}
        try:
            folder.mkdir()  # 0o777 less the umask: the team reads what we write
            with open(folder / METAFNAME, "w", encoding="utf-8") as handle:
                yaml.safe_dump(meta, handle, sort_keys=False)
            if tensors:
                torch.save(dict(tensors), folder / META_TENSORS)
            for key, hook in savers.items():
                paramfiles[key] = folder / f"{key}{PARAMFILE_EXT}"
                try:
                    hook(self.recoverables[key], paramfiles[key])
                except RuntimeError as exc:
                    if hook is torch_save:  # torch's zip writer says "disk full" this way
                        raise self._write_error(exc) from None
                    raise
            fsync_tree(folder)
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
            f"{write_failure(exc, existing_parent(self.checkpoints_dir))}; earlier checkpoints are "
            "intact: free space or fix the permissions, then save again"
        )

    def _run_all_rank_savers(self, savers: Mapping[str, SaveHook]) -> None:
        """Off rank 0: join the savers that every rank must run, writing into a scratch folder
        (rank 0 writes the real files)."""
        joined = {key: hook for key, hook in savers.items()
                  if hook in SAVE_ON_ALL_RANKS or (hook is torch_save and holds_shards(self.recoverables[key]))}
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
        return list_checkpoint_folders(self.checkpoints_dir)

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
        ranked = rank_checkpoints(self.list_checkpoints(), importance_key, max_key, min_key, ckpt_predicate)
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
            MissingRecoverableError: (a RuntimeError, as in SpeechBrain) a recoverable has no
                file in the checkpoint, unless partial loads are allowed or it is optional.
            CheckpointError: a file is unreadable or does not fit.
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
                raise MissingRecoverableError(
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
            raise no_hook_error("load", key, obj)

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
