"""docs/architecture.md's layer rule, held by the code: each layer of `baton/` imports only from
the layers above it in the doc's list, and the list names every module and package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import baton

PACKAGE = Path(baton.__file__).parent
DOC = PACKAGE.parent / "docs" / "architecture.md"


def layer_order() -> list[str]:
    """The top-level names of the '## Layers' list, in order (`atomic`, `errors`, ..., `conf`)."""
    text = DOC.read_text(encoding="utf-8")
    block = text.split("## Layers", 1)[1].split("```", 2)[1]
    return re.findall(r"^  (\w+?)(?:\.py|/)\s", block, flags=re.MULTILINE)


def imported_layers(path: Path, source: str | None = None) -> list[tuple[str, int]]:
    """(top-level baton name, line) for every import of baton in `path` (or in `source`, as if
    it were that file), wherever it sits (module top, function body, TYPE_CHECKING block)."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    package = parts if path.name == "__init__.py" else parts[:-1]
    if package and package[-1] == "__init__":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(source if source is not None else path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names = [*base, *(node.module.split(".") if node.module else [])]
                if not names:  # `from .. import distrib` at the package's root
                    found += [(alias.name.split(".")[0], node.lineno) for alias in node.names]
                else:
                    found.append((names[0], node.lineno))
            elif node.module and (node.module == "baton" or node.module.startswith("baton.")):
                rest = node.module.split(".")[1:]
                found += [(rest[0], node.lineno)] if rest else [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name.split(".")[1], node.lineno) for a in node.names if a.name.startswith("baton.")]
    return found


def layer_of(path: Path) -> str:
    first = path.relative_to(PACKAGE).parts[0]
    return first.removesuffix(".py")


def test_the_layer_list_names_every_module_and_package() -> None:
    order = layer_order()
    assert len(order) == len(set(order)), "a layer is listed twice"
    present = {p.name.removesuffix(".py") for p in PACKAGE.iterdir()
               if (p.suffix == ".py" and p.name != "__init__.py") or (p.is_dir() and not p.name.startswith("__"))}
    assert present - set(order) == set(), "in baton/ but not in docs/architecture.md's layer list"
    assert set(order) - present == set(), "in docs/architecture.md's layer list but not in baton/"


def test_no_module_imports_a_later_layer() -> None:
    order = layer_order()
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "__init__.py":  # the public facade names every layer's API
            continue
        mine = layer_of(path)
        for name, line in imported_layers(path):
            if name in order and name != mine and order.index(name) > order.index(mine):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({mine} imports {name})")
    assert upward == []


def test_the_checker_sees_an_upward_import() -> None:
    """The rule can fail: imports of `baton.xp` and `baton.solver` in a data module are found."""
    source = "def f():\n    from ..xp import status\n    import baton.solver.loop\n"
    found = imported_layers(PACKAGE / "data" / "probe.py", source)
    assert found == [("xp", 2), ("solver", 3)]
    order = layer_order()
    assert all(order.index(name) > order.index("data") for name, _ in found)


def test_no_module_is_over_450_lines() -> None:
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450}
    assert long == {}
