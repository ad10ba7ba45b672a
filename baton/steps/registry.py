"""One registry per family of step components: networks, injectors, losses, evaluators.

A YAML file names a component by `type` (networks: `which_model`); the registry maps that name
to a class. A user's project adds its own with a decorator and lists its module in the config's
`imports`, without touching baton:

    from baton.steps import Loss, register_loss

    @register_loss("envelope")
    class EnvelopeLoss(Loss):
        ...

baton's built-ins live in modules that are imported the first time a registry is read, so
`import baton` stays light.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigError

_BUILTIN_MODULES = (
    "baton.steps.injectors",
    "baton.steps.losses",
    "baton.steps.evaluators",
    "baton.steps.networks",
)
_builtins_loaded = False


class Registry:
    """Name -> class (or factory) for one family of components."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator: make the class (or function returning a component) available as `name`."""

        def decorator(obj: Any) -> Any:
            _load_builtins()  # a user's name that a built-in takes fails here, not later
            previous = self._entries.get(name)
            # The same object defined again (a notebook cell run twice, a reload) replaces the
            # old definition; another object under a taken name is a mistake.
            if previous is not None and _qualified(previous) != _qualified(obj):
                raise ValueError(
                    f"{self.family} type '{name}' is taken by {_qualified(previous)}; pick another name"
                )
            self._entries[name] = obj
            return obj

        return decorator

    def names(self) -> list[str]:
        _load_builtins()
        return sorted(self._entries)

    def get(self, name: str, where: str) -> Callable[..., Any]:
        """The class registered as `name`, or one given as an import path 'pkg.module.Class'.

        Raises:
            ConfigError: naming `where` (e.g. "step 'disc' loss 'gan'") and the known types.
        """
        _load_builtins()
        if name in self._entries:
            return self._entries[name]
        if "." in str(name):
            module_name, _, attr = str(name).rpartition(".")
            try:
                return getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                raise ConfigError(f"{where}: cannot import {self.family} '{name}' ({exc})") from None
        close = difflib.get_close_matches(str(name), self._entries, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(
            f"{where}: unknown {self.family} type '{name}'{hint}; known: {', '.join(self.names())}, "
            "or an import path 'package.module.Class'"
        )

    def build(self, name: str, options: Mapping[str, Any], where: str) -> Any:
        """Instantiate `name` with `options` as keyword arguments, refusing unknown options.

        A component's own refusal (a bad value) is prefixed with where it is configured."""
        factory = self.get(name, where)
        check_options(factory, options, f"{where} ({self.family} type '{name}')")
        try:
            return factory(**options)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where} ({self.family} type '{name}'): {exc}") from None


def check_options(factory: Callable[..., Any], options: Mapping[str, Any], where: str) -> None:
    """Raise a one-line ConfigError for an option the factory does not take, or a missing one."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        return
    params = signature.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for option in options:
        if option not in accepted:
            close = difflib.get_close_matches(option, accepted, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
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


_builtins_loading = False


def _load_builtins() -> None:
    global _builtins_loaded, _builtins_loading
    if _builtins_loaded or _builtins_loading:  # loading: the built-ins' own decorators call this
        return
    _builtins_loading = True
    try:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        _builtins_loaded = True
    finally:
        _builtins_loading = False


networks = Registry("network")
injectors = Registry("injector")
losses = Registry("loss")
evaluators = Registry("evaluator")

register_network = networks.register
register_injector = injectors.register
register_loss = losses.register
register_evaluator = evaluators.register
