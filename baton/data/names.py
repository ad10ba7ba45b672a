"""File names built from data are names, never paths.

A label, speaker id or any other manifest field can hold `/`, `..`, a leading dot or a
thousand characters. Whenever baton puts such a value into a file name (generated samples, the
built-in dataset) it goes through `safe_filename` first, so the file lands in the folder it was
meant for, is not hidden, and fits the file system's name limit.

Standard library only: the engine and the tasks may import it without soundfile or torch.
"""

from __future__ import annotations

import hashlib
import re

# Anything else (separators, spaces, quotes, non-ASCII, control characters) becomes `_`.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
# Far below the usual 255-byte limit, leaving room for the prefix and suffix a caller adds.
MAX_LENGTH = 80


def safe_filename(text: object, *, max_length: int = MAX_LENGTH) -> str:
    """`text` as one file name component: only `[A-Za-z0-9._-]`, no leading dot, bounded.

    Every character outside that set becomes `_`, leading dots are stripped (no hidden files,
    no `.` or `..`), and a name longer than `max_length` is cut and ends with a hash of the
    whole text, so two long values that share a prefix still get different names. Empty
    results become `_`.

        >>> safe_filename("speech/male")
        'speech_male'
        >>> safe_filename("../../etc/passwd")
        '_.._etc_passwd'
    """
    raw = str(text)
    name = _UNSAFE.sub("_", raw).lstrip(".")
    if len(name) > max_length:
        digest = hashlib.sha1(raw.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        keep = max_length - len(digest) - 1
        name = f"{name[:keep]}_{digest}" if keep > 0 else name[:max_length]
    return name or "_"
