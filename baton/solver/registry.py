"""Solvers are chosen by a plain name -> class map, or by an import path.

`@register_solver("compression")` makes `solver=compression` in a config pick that class. A user
project that does not want to touch baton's registry sets `solver: mypkg.solvers.MySolver`.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

_SOLVERS: dict[str, type] = {}

# Baton's own solvers live in modules that are imported only when asked for, so `import baton`
# stays light. name -> module that registers it.
_BUILTIN_MODULES: dict[str, str] = {
    "extensible": "baton.solver.extensible",
    "example": "baton.tasks.example",
    "compression": "baton.tasks.compression",
    "classification": "baton.tasks.classification",
    "lm": "baton.tasks.lm",
}


def register_solver(name: str):
    """Class decorator: make the solver class available as `solver=<name>`."""

    def decorator(cls: type) -> type:
        previous = _SOLVERS.get(name)
        # The same class defined again (a notebook cell run twice, importlib.reload) replaces
        # the old definition; another class under a taken name is a mistake.
        if previous is not None and _qualified(previous) != _qualified(cls):
            raise ValueError(f"solver name '{name}' is taken by {_qualified(previous)}; pick another name")
        _SOLVERS[name] = cls
        return cls

    return decorator


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def solver_names() -> list[str]:
    return sorted(set(_SOLVERS) | set(_BUILTIN_MODULES))


def get_solver_class(name: str) -> Any:
    """Resolve a solver name or a dotted import path 'pkg.module.Class' to the class.

    Raises:
        KeyError: with a one-line message listing close names when nothing matches.
    """
    if name in _SOLVERS:
        return _SOLVERS[name]
    if name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
        return _SOLVERS[name]
    if "." in name:
        module_name, _, attr = name.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise KeyError(f"solver '{name}': cannot import module '{module_name}' ({exc})") from None
        if not hasattr(module, attr):
            raise KeyError(f"solver '{name}': module '{module_name}' has no attribute '{attr}'")
        return getattr(module, attr)
    close = difflib.get_close_matches(name, solver_names(), n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    raise KeyError(
        f"unknown solver '{name}'{hint}; known: {', '.join(solver_names()) or 'none'}, "
        "or give an import path 'package.module.Class'"
    )
