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

Reading never runs code from the file: checkpoints load with `torch.load(weights_only=True)`,
which unpickles tensors, containers and plain values only. A file that needs more (a pickled
class of some solver, or a crafted pickle) is refused with `UnsafeCheckpointError` unless the
caller says it trusts the file (`trusted=True`: `checkpoint.trusted=true`, `--trust`).
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import re
import threading
import warnings
from pathlib import Path
from typing import Any, TypedDict

import torch

from .atomic import atomic_write, remove_stale_temporaries
from .errors import CheckpointError, UnsafeCheckpointError, write_failure
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
    train_stream: dict[str, int] | None  # data position: {"epoch", "position"}
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


TRUST_HINT = "load it with --trust (baton info/export) or checkpoint.trusted=true (baton run)"


def load_file(path: str | Path, *, trusted: bool = False, trust_hint: str = TRUST_HINT) -> Any:
    """`torch.load` one file onto the CPU, refusing anything that could run code from it.

    Every reader of checkpoint files goes through here, so all of them refuse a crafted pickle
    the same way and report a damaged file on one line that names it.

    Args:
        trusted: unpickle anything the file holds (`weights_only=False`). Only for files from a
            trusted source: a crafted pickle runs arbitrary code when loaded this way.
        trust_hint: how a caller's user says they trust the file, ending the refusal message
            ("pass Checkpointer(..., trusted=True)"); baton's CLI options by default.
    Raises:
        UnsafeCheckpointError: without `trusted`, the file holds more than tensors and plain
            values (nothing of it was run).
        CheckpointError: a missing, truncated or unreadable file.
    """
    path = Path(path)
    wanted = None if trusted else _plain_pickle_global(path)
    if wanted is not None:  # refused before torch sees it (torch would only call it damaged)
        raise UnsafeCheckpointError(
            f"checkpoint {path} is refused: loading it needs {wanted}, and unpickling that "
            f"could run arbitrary code; only if you trust the file, {trust_hint}"
        )
    try:
        return _load(path, trusted)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except pickle.UnpicklingError as exc:
        wanted = None if trusted else _refused_global(str(exc))
        if wanted is not None:
            raise UnsafeCheckpointError(
                f"checkpoint {path} is refused: loading it needs {wanted}, and unpickling that "
                f"could run arbitrary code; only if you trust the file, {trust_hint}"
            ) from None
        raise CheckpointError(
            f"checkpoint {path} is unreadable (truncated or corrupt: {_pickle_problem(exc)})"
        ) from None
    except Exception as exc:  # torch raises several types for a truncated zip
        raise CheckpointError(
            f"checkpoint {path} is unreadable (truncated or corrupt: {_first_line(exc)})"
        ) from None


def _load(path: Path, trusted: bool) -> Any:
    if trusted:
        return torch.load(path, map_location="cpu", weights_only=False)
    with _legacy_globals(), warnings.catch_warnings():
        # torch warns about a file's pickle protocol before refusing it: the refusal (one line,
        # ours) is what the user must read first.
        warnings.filterwarnings("ignore", module=r"torch\._weights_only_unpickler")
        return torch.load(path, map_location="cpu", weights_only=True)


def _plain_pickle_global(path: Path) -> str | None:
    """The first function or class a plain (not zip) pickle file asks for, read from its opcodes
    without running any: 'posix.system' for a crafted file. torch's own files are zip archives
    (legacy ones start with a magic-number pickle, which names nothing); None for those, and for
    files that are no pickle at all (the load then reports them damaged)."""
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            return None
        with open(path, "rb") as handle:
            strings: list[str] = []
            for opcode, arg, _ in pickletools.genops(handle):
                if opcode.name in ("GLOBAL", "INST"):
                    return str(arg).replace(" ", ".")
                if opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    return f"{strings[-2]}.{strings[-1]}"
                if isinstance(arg, str):
                    strings.append(arg)
    except (OSError, ValueError, EOFError):  # unreadable, or not a pickle: torch says so
        return None
    return None


def _legacy_globals() -> contextlib.AbstractContextManager[Any]:
    """Allow what checkpoints written before baton stored RNG states as tensors hold: numpy's
    RNG state as a uint32 ndarray. Rebuilding an array runs no code of the file's choosing
    (the same three globals torch's docs suggest for numpy arrays), so old XPs resume as before.
    Scoped to one load: nothing is added to torch's process-wide allowlist."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    if safe_globals is None:  # torch < 2.5: such old files need trusted=True
        return contextlib.nullcontext()
    import numpy as np

    reconstruct = np.ndarray(0).__reduce__()[0]  # numpy.(_)core.multiarray._reconstruct
    return safe_globals(
        [
            (reconstruct, "numpy.core.multiarray._reconstruct"),
            (reconstruct, "numpy._core.multiarray._reconstruct"),
            np.ndarray,
            np.dtype,
            type(np.dtype(np.uint32)),  # numpy.dtypes.UInt32DType on numpy >= 1.25
        ]
    )


def _refused_global(message: str) -> str | None:
    """The function or class a pickle asked for and weights_only refused, out of torch's
    many-line message; None when the pickle is simply damaged (e.g. an unknown opcode)."""
    patterns = (
        r"GLOBAL (\S+) was not an allowed global",
        r"unrecognized function (.+?)(?: which belongs|$)",
        r"but got <class '([^']+)'>",
        r"GLOBAL (\S+) whose module \S+ is blocked",
    )
    for pattern in patterns:
        found = re.search(pattern, message, re.MULTILINE)
        if found:
            return found.group(1).strip()
    return None


def _pickle_problem(exc: BaseException) -> str:
    """The unpickler's own complaint: the last line of torch's wrapper message, not its first."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith(("Weights only", "Check the doc"))]
    return reasons[-1] if reasons else _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
        """Drop temporary files left by a process killed mid-write (never a complete file)."""
        remove_stale_temporaries(self.folder, "checkpoint*")

    def load(self) -> dict[str, Any] | None:
        """The newest readable checkpoint of this XP, or None when there is none at all.

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
