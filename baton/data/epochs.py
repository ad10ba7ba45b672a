"""`set_epoch` for a dataset and every dataset it wraps.

Per-item randomness (`AudioDataset`'s random crops) is drawn from (seed, epoch, index), so the
epoch must reach the dataset that draws it. A wrapper (a `torch.utils.data.Subset`, a
`ConcatDataset`, a user's class adding an augmentation) usually has no `set_epoch`, or one that
forgets to forward it: the inner dataset would then stay at epoch 0 and serve the same crops
every epoch, silently. So the engine does not rely on the wrapper: it walks the chain and calls
`set_epoch` on every dataset it finds.

What the walk follows, from each object, each object once (cycles and shared datasets are fine):
- the attributes named in `LINKS` (`dataset`: Subset and most wrappers; `datasets`:
  ConcatDataset, ChainDataset; `base`), whatever their type; a list or tuple there is followed
  item by item;
- any other attribute of the object's `__dict__` that holds a `torch.utils.data.Dataset` (or a
  list or tuple that starts with one), so a wrapper that keeps its inner dataset as `self.inner` or
  `self._source` is covered too.

Inner datasets get `set_epoch` first, outer ones last: a wrapper whose own `set_epoch` forwards
a different epoch to its inner dataset (say `epoch // 2`) keeps the last word. `set_epoch` must
be idempotent: a dataset may be reached twice (once by the walk, once by a forwarding wrapper).
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

from torch.utils.data import Dataset

LINKS = ("dataset", "datasets", "base")

# Values never worth walking into: they cannot hold a dataset instance.
_LEAVES = (str, bytes, int, float, complex, bool, type(None), type, types.ModuleType,
           types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def walk_datasets(dataset: Any) -> list[Any]:
    """`dataset` and every dataset reachable from it (see the module doc), inner ones first."""
    seen: set[int] = set()
    order: list[Any] = []

    def visit(obj: Any) -> None:
        if isinstance(obj, _LEAVES) or id(obj) in seen:
            return
        seen.add(id(obj))
        for child in _children(obj):
            visit(child)
        order.append(obj)

    visit(dataset)
    return order


def _children(obj: Any) -> Iterator[Any]:
    if isinstance(obj, (list, tuple)):
        yield from obj
        return
    for name in LINKS:
        try:
            value = getattr(obj, name, None)
        except Exception:  # a property that fails: not a link  # noqa: BLE001
            continue
        yield from _as_datasets(value, any_type=True)
    try:
        attributes = vars(obj)
    except TypeError:  # no __dict__ (slots, builtins)
        return
    for name, value in list(attributes.items()):
        if name not in LINKS:
            yield from _as_datasets(value, any_type=False)


def _as_datasets(value: Any, *, any_type: bool) -> Iterator[Any]:
    if isinstance(value, (list, tuple)):
        # Outside LINKS, a list is taken for datasets only if it starts with one: a manifest's
        # million entries are not scanned at every epoch.
        if any_type or (value and isinstance(value[0], Dataset)):
            yield from (item for item in value if any_type or isinstance(item, Dataset))
    elif value is not None and (any_type or isinstance(value, Dataset)):
        yield value


def epoch_aware(dataset: Any) -> list[Any]:
    """The datasets in `dataset`'s chain that have a `set_epoch`, inner ones first."""
    return [d for d in walk_datasets(dataset) if callable(getattr(d, "set_epoch", None))]


def set_epoch(dataset: Any, epoch: int) -> int:
    """Call `set_epoch(epoch)` on `dataset` and on every dataset it wraps that has one.

    Returns:
        How many datasets were told the epoch.
    """
    found = epoch_aware(dataset)
    for item in found:
        item.set_epoch(epoch)
    return len(found)
