"""Solvers are chosen by a plain name or by an import path, through one `Registry`.

`@register_solver("compression")` makes `solver=compression` in a config pick that class. A user
project that does not want to touch baton's registry sets `solver: mypkg.solvers.MySolver`.
`solver_class_of(cfg)` is the one lookup every caller uses (`baton run`, grids, references):
the config's `imports` first, then its `solver`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from ..registry import Registry

# Baton's own solvers live in modules that are imported only when asked for, so `import baton`
# stays light. name -> module that registers it.
SOLVERS = Registry("solver", lazy={
    "extensible": "baton.solver.extensible",
    "example": "baton.tasks.example",
    "compression": "baton.tasks.compression",
    "classification": "baton.tasks.classification",
    "lm": "baton.tasks.lm",
}, noun="name", suggestions=3)


def register_solver(name: str) -> Callable[[Any], Any]:
    """Class decorator: make the solver class available as `solver=<name>`."""
    return SOLVERS.register(name)


def solver_names() -> list[str]:
    return SOLVERS.names()


def get_solver_class(name: str, where: str = "config key 'solver'") -> Any:
    """Resolve a solver name or a dotted import path 'pkg.module.Class' to the class.

    Raises:
        ConfigError: naming `where`, with close names, when nothing matches.
    """
    return SOLVERS.get(name, where)


def solver_class_of(cfg: Any, where: str = "config key 'solver'", hint: Callable[[str], str] = lambda what: "") -> Any:
    """The class `cfg.solver` names, after importing the modules of `cfg.imports`.

    `hint(what)` ('imports' or 'solver') adds the caller's advice to the error (where solvers
    are searched, a missing baton.toml).
    """
    for module in cfg.get("imports") or []:
        try:
            importlib.import_module(str(module))
        except ImportError as exc:
            raise ConfigError(f"imports: cannot import '{module}' ({exc}){hint('imports')}") from None
    try:
        return get_solver_class(str(cfg.solver), where)
    except ConfigError as exc:
        raise ConfigError(f"{exc}{hint('solver')}") from None
