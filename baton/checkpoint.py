"""The checkpoint format and how checkpoints reach the disk.

Layout in an XP folder:
  checkpoint.th            the latest state (end of an epoch, or inside one)
  checkpoint_<epoch>.th    kept end-of-epoch states (keep-last-N, keep-every-K)

A file is `torch.save` of {"format": "baton", "version", "sig", "solver", "epoch", "state"}. The
XP's signature and the writing solver's class are checked on load; `epoch` counts finished
epochs; `state` is a `SavedSolver` (declared below; written by `baton.solver.loop_state`). Files
of older format versions are upgraded on read. Writes go through `baton.atomic` (temporary
file in the same folder, fsync, rename), so a kill or a full disk leaves the previous file
intact. A kept copy is a
separate copy, not a hard link: writing into `checkpoint.th` in place (`cp other.th
checkpoint.th`) must not silently change a kept file too. Old kept files are pruned only after
the new one is complete.

An FSDP run's sharded tensors are written by every rank into `shards/<name>/` through
torch.distributed.checkpoint; its checkpoint.th (the commit point, written last) holds the rest
and names that folder under "shards" (see `baton.sharded`).

Reading never runs code from the file: every read goes through `baton.safe_load.load_file`
(weights_only, with a one-line refusal) unless the caller trusts the file (`trusted=True`:
`checkpoint.trusted=true`, `--trust`).
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any, TypedDict

import torch

from . import distrib
from .atomic import atomic_write, remove_stale_temporaries
from .errors import CheckpointError, UnsafeCheckpointError, write_failure
from .safe_load import load_file
from .stateful import copy_state

logger = logging.getLogger(__name__)

FORMAT = "baton"
VERSION = 2  # 2: one best state per tracked metric ("best"), "stopped_early"
LATEST = "checkpoint.th"
_KEPT = re.compile(r"^checkpoint_(\d+)\.th$")


class SavedBest(TypedDict):
    primary: str | None  # the config's best_metric.name (None: upgraded from version 1)
    values: dict[str | None, float]  # metric -> best value so far
    states: dict[str | None, dict[str, Any]]  # metric -> {registered name: state dict}


class SavedLoop(TypedDict):
    epoch: int  # the epoch to run next (1-based)
    update: int  # optimizer updates done since the start
    history: list[dict[str, dict[str, float]]]  # one entry per finished epoch: stage -> metrics
    stopped_early: bool  # should_stop() ended training
    epoch_results: dict[str, dict[str, float]]  # stages of the running epoch already done
    train_done: int  # updates of the running epoch's train stage already done
    stage_metrics: list[dict[str, Any]] | None  # every rank's running train metrics (mid-stage)
    train_stream: dict[str, int] | None  # data position: {"epoch", "position", "world_size"} (no world_size before it)
    rng: list[dict[str, Any]]  # every rank's RNG states (python, numpy, torch, cuda)


class SavedSolver(TypedDict):
    registered: dict[str, Any]  # register_stateful names -> state_dict() or plain value
    modules: list[str]  # which registered names are modules (plain keys, never DDP's)
    best: SavedBest
    ema: dict[str, Any] | None  # {"decay", "num_updates", "averages": {name: state dict}}
    loop: SavedLoop


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Bring an older file's state to the current layout (in memory; the file is untouched)."""
    if data.get("version", 1) == 1:
        state, loop = data["state"], data["state"]["loop"]
        value, best = loop.pop("best_value", None), state.pop("best_state", None) or {}
        state["best"] = {"primary": None, "values": {} if value is None else {None: value},
                         "states": {None: best} if best else {}}
        loop["stopped_early"] = False
        data["version"] = VERSION
    return data


def kept_name(epoch: int) -> str:
    return f"checkpoint_{epoch}.th"


def write_atomic(obj: Any, path: Path, copy_as: Path | None = None) -> None:
    """torch.save `obj` to `path` so that `path` is either the old file or the complete new one.

    `copy_as`, when given, gets a separate copy of the same bytes (serialized once), also
    atomically, before `path` is replaced.
    """
    copies = [copy_as] if copy_as is not None else []
    atomic_write(path, lambda handle: torch.save(obj, handle), copies=copies)


def read_checkpoint(
    path: Path, expected_sig: str | None = None, *, trusted: bool = False,
    expected_solver: str | None = None,
) -> dict[str, Any]:
    """Load and check one checkpoint file.

    Args:
        trusted: unpickle anything the file holds (`weights_only=False`). Only for files from a
            trusted source: a crafted pickle runs arbitrary code when loaded this way.
    Raises:
        UnsafeCheckpointError: without `trusted`, the file holds more than tensors and plain
            values (nothing of it was run).
        CheckpointError: truncated or unreadable file, not a baton checkpoint, a newer format
            version, or a file written by another XP (signature mismatch).
    """
    path = Path(path)
    data = load_file(path, trusted=trusted)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a baton checkpoint (no 'format: baton' header)")
    if data.get("version", 0) > VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {data['version']}, newer than this baton "
            f"({VERSION}); upgrade baton to read it"
        )
    if expected_sig is not None and data.get("sig") != expected_sig:
        owner = f"XP {data['sig']}" if data.get("sig") else "no XP (a solver run by hand?)"
        raise CheckpointError(f"checkpoint {path} belongs to {owner}, not {expected_sig} (was a file copied in?)")
    written_by = str(data.get("solver") or expected_solver)
    # By class name: the same class run from a notebook (__main__.X) and a module (mytask.X).
    if expected_solver is not None and written_by.rsplit(".", 1)[-1] != expected_solver.rsplit(".", 1)[-1]:
        raise CheckpointError(f"checkpoint {path} was written by solver {data['solver']}, not {expected_solver}")
    return _upgrade(data)


def kept_epochs(folder: Path) -> list[int]:
    """Epochs of the kept checkpoints in `folder`, oldest first."""
    if not Path(folder).is_dir():
        return []
    found = (_KEPT.match(p.name) for p in Path(folder).iterdir())
    return sorted(int(m.group(1)) for m in found if m)


class CheckpointManager:
    """Saves and restores the checkpoints of one XP folder.

    Args:
        folder: the XP folder.
        sig: the XP signature written into each file and checked on load (None: no check).
        keep_last: end-of-epoch checkpoints kept as `checkpoint_<epoch>.th`.
        keep_every: also keep every K-th epoch's checkpoint for good.
        async_save: copy the state to CPU, then write it in a background thread.
        trusted: load checkpoints with full unpickling (see `read_checkpoint`); only for
            files from a trusted source.
    """

    def __init__(
        self,
        folder: Path,
        sig: str | None = None,
        *,
        keep_last: int = 2,
        keep_every: int | None = None,
        async_save: bool = False,
        trusted: bool = False,
        solver: str | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.sig = sig
        self.solver = solver  # 'module.Class' of the writer, checked on load
        self.keep_last = keep_last
        self.keep_every = keep_every
        self.async_save = async_save
        self.trusted = trusted
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def latest(self) -> Path:
        return self.folder / LATEST

    def save(self, state: dict[str, Any], epoch: int, *, end_of_epoch: bool) -> None:
        """Write `state`; `epoch` is the number of finished epochs."""
        self.wait()
        keep = end_of_epoch and self._should_keep(epoch)
        payload = {"format": FORMAT, "version": VERSION, "sig": self.sig, "solver": self.solver, "epoch": epoch}
        if not self.async_save:
            self._write({**payload, "state": state}, epoch if keep else None)
            return
        # The copy is taken now, on the caller's thread, so training may go on changing weights.
        snapshot = {**payload, "state": copy_state(state)}
        self._thread = threading.Thread(
            target=self._write_in_background, args=(snapshot, epoch if keep else None), daemon=False
        )
        self._thread.start()

    def save_sharded(self, state: dict[str, Any], epoch: int, *, end_of_epoch: bool, update: int) -> None:
        """Write a state holding sharded tensors: every rank writes its shards, then rank 0
        commits checkpoint.th naming their folder. Collective; synchronous (a background save
        of shards is not offered)."""
        from .sharded import new_folder_name, split, write_shards

        self.wait()
        skeleton, tensors = split(state)
        where = write_shards(tensors, self.folder, new_folder_name(update))
        if distrib.is_rank_zero():
            keep = end_of_epoch and self._should_keep(epoch)
            payload = {"format": FORMAT, "version": VERSION, "sig": self.sig, "solver": self.solver,
                       "epoch": epoch, "shards": where, "state": skeleton}
            self._write(payload, epoch if keep else None)
            self._prune_shards()
        distrib.barrier()  # no rank runs ahead of the commit (a kill then loses nothing it saw saved)

    def _prune_shards(self) -> None:
        from .sharded import SHARDS, prune_shards

        if not (self.folder / SHARDS).is_dir():
            return
        named = set()
        for path in [self.latest, *(self.folder / kept_name(e) for e in kept_epochs(self.folder))]:
            try:
                named.add(str(load_file(path, trusted=self.trusted).get("shards")))
            except UnsafeCheckpointError:
                return  # it may name a folder, to be loaded with --trust: remove nothing
            except (CheckpointError, AttributeError):
                continue  # unreadable: it names nothing that can be loaded
        prune_shards(self.folder, named)

    def _write_in_background(self, payload: dict[str, Any], keep_epoch: int | None) -> None:
        try:
            self._write(payload, keep_epoch)
        except BaseException as exc:  # re-raised on the training thread by wait()
            self._error = exc

    def _write(self, payload: dict[str, Any], keep_epoch: int | None) -> None:
        kept = self.folder / kept_name(keep_epoch) if keep_epoch is not None else None
        had_one = self.latest.exists()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomic(payload, self.latest, copy_as=kept)
        except (OSError, RuntimeError) as exc:  # torch's zip writer says ENOSPC as RuntimeError
            after = ("the previous checkpoint is intact: fix that, then run again to resume from it" if had_one
                     else "this was the XP's first checkpoint, so a rerun starts afresh: fix that first")
            raise CheckpointError(
                f"cannot write checkpoint {self.latest}: {write_failure(exc, self.folder)}; {after}"
            ) from None
        if keep_epoch is not None:
            self._prune()

    def wait(self) -> None:
        """Block until a background save is on disk; raise its error if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _should_keep(self, epoch: int) -> bool:
        return self.keep_last > 0 or bool(self.keep_every and epoch % self.keep_every == 0)

    def _prune(self) -> None:
        epochs = kept_epochs(self.folder)
        recent = set(epochs[-self.keep_last :]) if self.keep_last > 0 else set()
        for epoch in epochs:
            if epoch in recent or (self.keep_every and epoch % self.keep_every == 0):
                continue
            (self.folder / kept_name(epoch)).unlink(missing_ok=True)

    def remove_stale_temporaries(self) -> None:
        """Drop temporary files left by a process killed mid-write (never a complete file), and
        shard folders no checkpoint names (a kill before the commit)."""
        remove_stale_temporaries(self.folder, "checkpoint*")
        if distrib.is_rank_zero():
            self._prune_shards()

    def load(self, twin: Any = None) -> dict[str, Any] | None:
        """The newest readable checkpoint of this XP, or None when there is none at all.

        A sharded checkpoint's tensors are read into `twin(path)`'s layout where it gives a
        tensor (a live DTensor: each rank reads its shard; collective), else whole, with no
        process group (see `baton.sharded.read_shards`).

        A truncated or foreign latest file is reported on one line and the newest kept
        checkpoint is used instead. A refused one (unsafe to unpickle) is not skipped: going
        back to an older file would then overwrite the newer one the user may well trust.

        Raises:
            UnsafeCheckpointError: a checkpoint would need `trusted=True` to load.
            CheckpointError: checkpoint files exist but none can be used (nothing is deleted).
        """
        candidates = [self.latest] + [
            self.folder / kept_name(e) for e in reversed(kept_epochs(self.folder))
        ]
        candidates = [p for p in candidates if p.exists()]
        errors: list[str] = []
        for path in candidates:
            try:
                data = read_checkpoint(path, self.sig, trusted=self.trusted, expected_solver=self.solver)
                if data.get("shards") is not None:
                    from .sharded import read_shards

                    data["state"] = read_shards(data["state"], self.folder, str(data["shards"]), twin=twin, source=str(path))
            except UnsafeCheckpointError:
                raise
            except CheckpointError as exc:
                logger.warning("%s", exc)
                errors.append(str(exc))
                continue
            if errors:
                logger.warning("resuming from %s (epoch %d) instead", path.name, data["epoch"])
            return data
        if errors:
            raise CheckpointError(
                f"no usable checkpoint in {self.folder}: {errors[0]}; "
                "run with --clear to start afresh, or restore a backup"
            )
        return None


def exported_weights(
    folder: Path, source: str = "best", *, trusted: bool = False, sig: str | None = None
) -> dict[str, Any]:
    """Plain weights from an XP's latest checkpoint, loadable with `module.load_state_dict`.

    Args:
        source: 'best' (the best state by `best_metric`), 'ema' (the EMA weights), or 'last'.
        trusted: load the checkpoint with full unpickling (see `read_checkpoint`).
        sig: the XP's signature: a checkpoint of another XP (or of none) is refused.
    Returns:
        The state dict of the model when a single one is registered for that source, else a
        dict mapping each registered name to its state dict.
    """
    data = CheckpointManager(Path(folder), sig, trusted=trusted).load()
    if data is None:
        raise CheckpointError(f"no checkpoint in {folder}; train the XP first")
    weights = checkpoint_weights(data, source, where=f"the checkpoint in {folder}")
    return next(iter(weights.values())) if len(weights) == 1 else dict(weights)


def checkpoint_weights(data: dict[str, Any], source: str = "best", *, where: str = "the checkpoint") -> dict[str, Any]:
    """{registered name: state dict} of one source ('best', 'ema' or 'last') of a checkpoint
    read by `read_checkpoint`; `where` names it in errors.

    Raises:
        CheckpointError: an unknown source, or none of its weights in the checkpoint.
    """
    state = data["state"]
    if source == "best":
        best = state["best"]
        weights = best["states"].get(best["primary"]) or {}
    elif source == "ema":
        weights = (state.get("ema") or {}).get("averages") or {}
    elif source == "last":
        weights = {name: state["registered"][name] for name in state.get("modules", [])}
    else:
        raise CheckpointError(f"unknown export source '{source}'; use best, ema or last")
    if not weights:
        raise CheckpointError(
            f"{where} holds no '{source}' weights "
            f"(is {'register_best' if source == 'best' else 'register_ema' if source == 'ema' else 'the model registered'}?)"
        )
    return dict(weights)
