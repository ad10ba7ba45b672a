"""`Registry`: name -> class for one family of components a config names (step networks,
injectors, losses, evaluators and conditioners by `type`; solvers by `solver`), with a decorator
a user's project uses to add its own without touching baton. Built-ins live in modules imported
on first use, so `import baton` stays light.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import ConfigError, did_you_mean


class Registry:
    """Name -> class (or factory) for one family of components.

    Args:
        family: what a component is called in messages ("loss", "conditioner").
        builtins: modules whose decorators register baton's own components.
        lazy: name -> the module that registers it, imported only when that name is asked for
            (a solver's module may import a whole task).
        noun: how a config names one ("type" for components, "name" for solvers).
        suggestions: close names offered for an unknown one.
    """

    def __init__(self, family: str, builtins: Sequence[str] = (), *, lazy: Mapping[str, str] | None = None,
                 noun: str = "type", suggestions: int = 1) -> None:
        self.family = family
        self.builtins = tuple(builtins)
        self.lazy = dict(lazy or {})
        self.noun = noun
        self.suggestions = suggestions
        self._entries: dict[str, Callable[..., Any]] = {}
        self._loaded = False
        self._loading = False

    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator: make the class (or function returning a component) available as `name`."""

        def decorator(obj: Any) -> Any:
            self._load_builtins()  # a user's name that a built-in takes fails here, not later
            previous = self._entries.get(name)
            # The same object defined again (a notebook cell run twice, a reload) replaces the
            # old definition; another object under a taken name is a mistake.
            if previous is not None and _qualified(previous) != _qualified(obj):
                raise ValueError(
                    f"{self.family} {self.noun} '{name}' is taken by {_qualified(previous)}; pick another name"
                )
            self._entries[name] = obj
            return obj

        return decorator

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted(set(self._entries) | set(self.lazy))

    def get(self, name: str, where: str) -> Callable[..., Any]:
        """The class registered as `name`, or one given as an import path 'pkg.module.Class'.

        Raises:
            ConfigError: naming `where` (e.g. "steps.disc.losses.gan") and the known types.
        """
        self._load_builtins()
        if name not in self._entries and name in self.lazy:
            importlib.import_module(self.lazy[name])
        if name in self._entries:
            return self._entries[name]
        if "." in str(name):
            module_name, _, attr = str(name).rpartition(".")
            try:
                return getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                raise ConfigError(f"{where}: cannot import {self.family} '{name}' ({exc})") from None
        hint = did_you_mean(str(name), self.names(), n=self.suggestions)
        raise ConfigError(
            f"{where}: unknown {self.family} {self.noun} '{name}'{hint}; known: {', '.join(self.names())}, "
            "or an import path 'package.module.Class'"
        )

    def build(self, name: str, options: Mapping[str, Any], where: str, shared: Sequence[str] = ()) -> Any:
        """Instantiate `name` with `options` as keyword arguments, refusing unknown options.

        `shared`: the keys the caller took out of the section itself (a loss's `weight`), named
        with the component's own in messages and "did you mean" hints. A component's own
        refusal (a bad value) is prefixed with where it is configured."""
        factory = self.get(name, where)
        check_options(factory, options, f"{where} ({self.family} type '{name}')", shared)
        try:
            return factory(**options)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where} ({self.family} type '{name}'): {exc}") from None

    def _load_builtins(self) -> None:
        if self._loaded or self._loading:  # loading: the built-ins' own decorators call this
            return
        self._loading = True
        try:
            for module in self.builtins:
                importlib.import_module(module)
            self._loaded = True
        finally:
            self._loading = False


def check_options(factory: Callable[..., Any], options: Mapping[str, Any], where: str, shared: Sequence[str] = ()) -> None:
    """Raise a one-line ConfigError for an option the factory does not take (the `shared` keys
    a caller handles itself count as taken), or a missing one."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        return
    params = signature.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [*shared, *(n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL)]
    for option in options:
        if option not in accepted:
            hint = did_you_mean(option, accepted)
            raise ConfigError(f"{where}: unknown option '{option}'{hint}; it takes {', '.join(accepted) or 'none'}")
    missing = [
        n for n, p in params.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        and n not in options
    ]
    if missing:
        raise ConfigError(f"{where}: missing option {', '.join(repr(m) for m in missing)}")


def _qualified(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
