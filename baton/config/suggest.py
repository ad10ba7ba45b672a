"""'Did you mean' hints, shared by every error that names a key, an option or a sig."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


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
