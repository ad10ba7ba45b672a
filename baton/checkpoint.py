"""The checkpoint format and how checkpoints reach the disk.

Layout in an XP folder:
  checkpoint.th            the latest state (end of an epoch, or inside one)
  checkpoint_<epoch>.th    kept end-of-epoch states (keep-last-N, keep-every-K)

A file is `torch.save` of {"format": "baton", "version", "sig", "epoch", "state"}, where `epoch`
counts finished epochs. Writes go to a temporary file in the same folder, are fsynced, then
renamed over the target, so a kill or a full disk leaves the previous file intact. A kept copy
is a separate copy, not a hard link: writing into `checkpoint.th` in place (`cp other.th
checkpoint.th`) must not silently change a kept file too. Old kept files are pruned only after
the new one is complete.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError
from .state import copy_state

logger = logging.getLogger(__name__)

FORMAT = "baton"
VERSION = 1
LATEST = "checkpoint.th"
_KEPT = re.compile(r"^checkpoint_(\d+)\.th$")


def kept_name(epoch: int) -> str:
    return f"checkpoint_{epoch}.th"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(obj: Any, path: Path, copy_as: Path | None = None) -> None:
    """torch.save `obj` to `path` so that `path` is either the old file or the complete new one.

    `copy_as`, when given, gets a copy of the same content, also atomically.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        if copy_as is not None:
            copy_tmp = copy_as.with_name(f".{copy_as.name}.{os.getpid()}.tmp")
            try:
                shutil.copyfile(tmp, copy_tmp)
                with open(copy_tmp, "rb+") as f:
                    os.fsync(f.fileno())
                os.replace(copy_tmp, copy_as)
            finally:
                copy_tmp.unlink(missing_ok=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def read_checkpoint(path: Path, expected_sig: str | None = None) -> dict[str, Any]:
    """Load and check one checkpoint file.

    Raises:
        CheckpointError: truncated or unreadable file, not a baton checkpoint, a newer format
            version, or a file written by another XP (signature mismatch).
    """
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except Exception as exc:  # torch raises several types for a truncated zip
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} is unreadable (truncated or corrupt: {reason})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a baton checkpoint (no 'format: baton' header)")
    if data.get("version", 0) > VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {data['version']}, newer than this baton "
            f"({VERSION}); upgrade baton to read it"
        )
    if expected_sig is not None and data.get("sig") not in (None, expected_sig):
        raise CheckpointError(
            f"checkpoint {path} belongs to XP {data['sig']}, not {expected_sig} "
            "(was the folder copied?)"
        )
    return data


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
    """

    def __init__(
        self,
        folder: Path,
        sig: str | None = None,
        *,
        keep_last: int = 2,
        keep_every: int | None = None,
        async_save: bool = False,
    ) -> None:
        self.folder = Path(folder)
        self.sig = sig
        self.keep_last = keep_last
        self.keep_every = keep_every
        self.async_save = async_save
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def latest(self) -> Path:
        return self.folder / LATEST

    def save(self, state: dict[str, Any], epoch: int, *, end_of_epoch: bool) -> None:
        """Write `state`; `epoch` is the number of finished epochs."""
        self.wait()
        keep = end_of_epoch and self._should_keep(epoch)
        payload = {"format": FORMAT, "version": VERSION, "sig": self.sig, "epoch": epoch}
        if not self.async_save:
            self._write({**payload, "state": state}, epoch if keep else None)
            return
        # The copy is taken now, on the caller's thread, so training may go on changing weights.
        snapshot = {**payload, "state": copy_state(state)}
        self._thread = threading.Thread(
            target=self._write_in_background, args=(snapshot, epoch if keep else None), daemon=False
        )
        self._thread.start()

    def _write_in_background(self, payload: dict[str, Any], keep_epoch: int | None) -> None:
        try:
            self._write(payload, keep_epoch)
        except BaseException as exc:  # re-raised on the training thread by wait()
            self._error = exc

    def _write(self, payload: dict[str, Any], keep_epoch: int | None) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        kept = self.folder / kept_name(keep_epoch) if keep_epoch is not None else None
        write_atomic(payload, self.latest, copy_as=kept)
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
        """Drop temporary files left by a process killed mid-write (never a complete file)."""
        if self.folder.is_dir():
            for path in self.folder.glob(".checkpoint*.tmp"):
                path.unlink(missing_ok=True)

    def load(self) -> dict[str, Any] | None:
        """The newest readable checkpoint of this XP, or None when there is none at all.

        A truncated or foreign latest file is reported on one line and the newest kept
        checkpoint is used instead.

        Raises:
            CheckpointError: checkpoint files exist but none can be used (nothing is deleted).
        """
        candidates = [self.latest] + [
            self.folder / kept_name(e) for e in reversed(kept_epochs(self.folder))
        ]
        candidates = [p for p in candidates if p.exists()]
        errors: list[str] = []
        for path in candidates:
            try:
                data = read_checkpoint(path, self.sig)
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


def exported_weights(folder: Path, source: str = "best") -> dict[str, Any]:
    """Plain weights from an XP's latest checkpoint, loadable with `module.load_state_dict`.

    Args:
        source: 'best' (the best state by `best_metric`), 'ema' (the EMA weights), or 'last'.
    Returns:
        The state dict of the model when a single one is registered for that source, else a
        dict mapping each registered name to its state dict.
    """
    data = CheckpointManager(Path(folder)).load()
    if data is None:
        raise CheckpointError(f"no checkpoint in {folder}; train the XP first")
    state = data["state"]
    if source == "best":
        weights = state.get("best_state") or {}
    elif source == "ema":
        weights = (state.get("ema") or {}).get("averages") or {}
    elif source == "last":
        weights = {name: state["registered"][name] for name in state.get("modules", [])}
    else:
        raise CheckpointError(f"unknown export source '{source}'; use best, ema or last")
    if not weights:
        raise CheckpointError(
            f"the checkpoint in {folder} holds no '{source}' weights "
            f"(is {'register_best' if source == 'best' else 'register_ema' if source == 'ema' else 'the model registered'}?)"
        )
    return next(iter(weights.values())) if len(weights) == 1 else dict(weights)
