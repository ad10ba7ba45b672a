"""User-facing errors: one clear line naming what is wrong and how to fix it.

The CLI prints `str(error)` and exits with code 2 (no traceback unless `--debug`). Raise these
for bad input (config, CLI arguments, audio files, checkpoints), never for bugs in baton.
"""

from __future__ import annotations

import difflib
import errno
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

# File-system faults a user can fix (space, permissions, a wrong path): one line, not a traceback.
FILE_SYSTEM_FAULTS = {
    errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS,
    errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG,
}


class UserError(Exception):
    """Bad input from the user. The message is one line: what, where, and the fix."""

    exit_code = 2


class ConfigError(UserError):
    """A config key, value, group option or override is wrong."""


class CheckpointError(UserError):
    """A checkpoint file is truncated, unreadable, or belongs to another XP."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint holds pickled objects beyond tensors and plain values: loading it could run
    arbitrary code, so it is refused unless the user says they trust the file."""


class MissingRecoverableError(CheckpointError, RuntimeError):
    """A checkpoint lacks a file for one of the Checkpointer's recoverables. A RuntimeError too,
    as SpeechBrain raises one there."""


class DataError(UserError):
    """An audio file or manifest line cannot be used."""


class NonFiniteLossError(UserError, ValueError):
    """The loss stayed NaN/inf for more batches in a row than the patience allows. A
    ValueError too, as SpeechBrain raises one there."""


def yaml_error_line(exc: Exception) -> str:
    """'invalid YAML in FILE line N: problem' from a yaml error, on one line."""
    mark = getattr(exc, "problem_mark", None)
    where = f"{mark.name} line {mark.line + 1}" if mark is not None else "a config file"
    problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
    return f"invalid YAML in {where}: {problem}; fix the file"


class DistributedError(UserError):
    """Ranks disagree on something they must share (e.g. the model they built)."""


def write_failure(exc: BaseException, folder: str | Path) -> str:
    """Why a write into `folder` failed, in words: 'No space left on device (/mnt/xps)'.

    torch's zip writer reports a full disk as 'unexpected pos ...' without an errno, so such an
    error is explained by the folder's free space when that is (nearly) exhausted.
    """
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{os.strerror(exc.errno)} ({mount_point(folder)})"
    try:
        if shutil.disk_usage(folder).free < 1 << 20:
            return f"{os.strerror(errno.ENOSPC)} ({mount_point(folder)})"
    except OSError:
        pass
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def mount_point(path: str | Path) -> str:
    """The mount point holding `path` (what a user frees space on or remounts)."""
    current = Path(path).resolve()
    while not current.exists() and current != current.parent:
        current = current.parent
    while not os.path.ismount(current) and current != current.parent:
        current = current.parent
    return str(current)


def file_system_fault(exc: OSError) -> UserError | None:
    """A one-line UserError for a file-system fault the user can fix, else None (a bug)."""
    if exc.errno not in FILE_SYSTEM_FAULTS:
        return None
    path = exc.filename or ""
    where = Path(path).parent if path else Path.cwd()
    return UserError(
        f"cannot write {path or 'a file'}: {write_failure(exc, where)}; free space, fix the "
        "permissions, or point baton elsewhere (BATON_XP_DIR, xp.root, -o)"
    )


def did_you_mean(word: str, candidates: Iterable[str], n: int = 1) -> str:
    """Return ' (did you mean 'x'?)' for the closest candidates, or '' when none is close.

    Dotted keys are compared whole and by their last component, so 'optim.lrr' finds 'optim.lr'
    and 'optim.learning_rate' still finds nothing silly.
    """
    candidates = list(dict.fromkeys(candidates))
    close = difflib.get_close_matches(word, candidates, n=n, cutoff=0.6)
    if not close and "." in word:
        parent, _, leaf = word.rpartition(".")
        siblings = [c for c in candidates if c.rpartition(".")[0] == parent]
        leaves = difflib.get_close_matches(leaf, [s.rpartition(".")[2] for s in siblings], n=n)
        close = [f"{parent}.{leaf_}" for leaf_ in leaves]
    if not close:
        return ""
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)"
