"""Loading a checkpoint file without running code from it.

Checkpoints load with `torch.load(weights_only=True)`, which unpickles tensors, containers and
plain values only. A file that needs more (a pickled class of some solver, or a crafted pickle)
is refused with `UnsafeCheckpointError`, naming what it asked for, unless the caller says it
trusts the file. Every reader of checkpoint files (the engine, the Checkpointer, info, export)
goes through `load_file`, so all of them refuse alike and report a damaged file on one line.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, UnsafeCheckpointError

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
