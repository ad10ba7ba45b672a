"""`import baton` says what baton is: the front ends, the config, the experiment manager, and
SpeechBrain's names, each typed for type checkers (no `Any` from the lazy loading)."""

from __future__ import annotations

import ast
import inspect

import baton


def test_the_front_ends_config_and_xp_api_import_from_baton() -> None:
    from baton import (  # noqa: F401
        Brain,
        Checkpointer,
        EpochCounter,
        ExtensibleSolver,
        RunOptions,
        StandardSolver,
        compose,
        load_model,
        register_solver,
        run,
    )
    from baton.solver.loop import BaseSolver

    assert issubclass(StandardSolver, BaseSolver) and issubclass(ExtensibleSolver, StandardSolver)
    assert issubclass(Brain, BaseSolver)
    assert "overrides" in inspect.signature(compose).parameters


def test_every_lazy_name_is_typed_for_type_checkers() -> None:
    """Each name `__getattr__` loads on first use is also imported under TYPE_CHECKING, from the
    module it is loaded from, so a checker sees its real type."""
    tree = ast.parse(inspect.getsource(baton))
    typed: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom)
                for alias in statement.names:
                    typed[alias.asname or alias.name] = f"baton.{statement.module}"
    lazy = baton._LAZY  # type: ignore[attr-defined]
    assert set(lazy) == set(typed)
    for name, module in lazy.items():
        assert typed[name] == module or getattr(baton, name).__module__.startswith(typed[name]), name
