"""Atomic file writes: a reader, a crash or a full disk sees the old file or the new one, whole.

Every file baton writes for later (checkpoints, XP files, history.jsonl, manifests, exports)
goes through `atomic_write`: the content goes to a hidden temporary file in the target's folder
(`.<name>.<pid>.<token>.tmp`, so a rename never crosses file systems), is flushed and fsynced,
then `os.replace`d over the target, and the folder is fsynced so the rename itself survives a
power cut. On any failure (an exception in the writer, ENOSPC, a signal turned exception) the
temporary file is removed and the previous file is left as it was. A process killed mid-write
leaves its temporary behind; `remove_stale_temporaries` finds those by their pattern.

The temporary file is created like any file the user makes (mode 0o666 less the umask, e.g.
0o644), never with a private 0o600 as `tempfile.mkstemp` would: the renamed file is what the
team reads. Folders baton makes get 0o777 less the umask for the same reason.

This module sits at the bottom of baton's imports: it uses the standard library only.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"

Writer = Callable[[BinaryIO], None]


def temporary_name(path: Path) -> Path:
    """A fresh hidden name next to `path`: the pid tells whose it was, the token keeps two
    writers of one process (a background checkpoint thread and the main thread) apart."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")


def fsync_dir(folder: Path) -> None:
    """Persist a rename in `folder`. Best effort: some file systems refuse to fsync a folder."""
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


def atomic_write(path: str | Path, writer: Writer, *, copies: Iterable[str | Path] = ()) -> None:
    """Call `writer` on a binary file that replaces `path` only once it is complete and on disk.

    Args:
        writer: writes the whole content into the file it is given (it must not close it).
        copies: other paths that get the same content, each a separate file written
            atomically too, before `path` is replaced. The content is produced once.
    Raises:
        Whatever `writer` or the file system raises; `path` and every copy then keep their
        previous content, and no temporary file is left.
    """
    target = Path(path)
    tmp = temporary_name(target)
    try:
        # "x": a fresh file, created with 0o666 & ~umask (open's default mode).
        with open(tmp, "xb") as handle:
            writer(handle)
            handle.flush()
            os.fsync(handle.fileno())
        for copy in copies:
            atomic_write(copy, lambda out: _copy_from(tmp, out))
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is None and exc.errno is not None:  # a failed write names no file: say which
            raise OSError(exc.errno, exc.strerror, str(target)) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def _copy_from(source: Path, out: BinaryIO) -> None:
    with open(source, "rb") as handle:
        shutil.copyfileobj(handle, out)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """`atomic_write` of a bytes object."""
    atomic_write(path, lambda handle: _write_all(handle, data))


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """`atomic_write` of a string (UTF-8 unless told, whatever the locale)."""
    write_bytes_atomic(path, text.encode(encoding))


def _write_all(handle: BinaryIO, data: bytes) -> None:
    handle.write(data)


def stale_temporaries(folder: str | Path, name_pattern: str = "*") -> list[Path]:
    """Temporary files `atomic_write` left in `folder` for targets matching `name_pattern`
    (a glob, e.g. 'checkpoint*'): those of a process killed mid-write, or of a write in
    progress right now."""
    base = Path(folder)
    if not base.is_dir():
        return []
    return sorted(base.glob(f".{name_pattern}.*{TMP_SUFFIX}"))


def remove_stale_temporaries(folder: str | Path, name_pattern: str = "*") -> None:
    """Delete what `stale_temporaries` finds. Only call it while no other process writes to
    `folder` (e.g. holding the XP's lock): a temporary is never a complete file of its own."""
    for path in stale_temporaries(folder, name_pattern):
        path.unlink(missing_ok=True)
