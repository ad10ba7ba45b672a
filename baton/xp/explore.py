"""Grids: sweeps are Python. A grid file declares XPs by calling a launcher.

    from baton.xp.explore import explorer

    @explorer(metrics=["train.loss", "valid.loss"])
    def explore(launcher):
        launcher.bind_(solver="example")        # every XP below gets this
        for lr in [1e-3, 1e-2]:
            launcher({"optim.lr": lr})          # one XP per call
        small = launcher.bind("task.hidden=16") # a copy with more overrides
        small(optim={"lr": 1e-3})
        launcher.slurm(gpus=2)(optim={"lr": 3e-3})  # SLURM resources, for `baton grid --slurm`
        codec = launcher(solver="compression/debug")
        launcher(solver="lm/debug", compression_model_checkpoint=f"//sig/{codec.sig}")  # a chain

Overrides are 'key=value' strings, dicts (nested or dotted keys) or keyword arguments, applied in
order; the rightmost value of a key wins. Grid files live in a `grids` package: baton's own
(`baton.grids`) and the user's, named by `baton grid --package`, `BATON_GRID_PACKAGE` or
`grid_package` in the project file (`baton.toml`), searched in that order, baton's last.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from baton.config.overrides import to_overrides
from baton.config.project import PROJECT_FILE, find_project, no_project_note
from baton.errors import UserError, did_you_mean

GRID_PACKAGE_ENV = "BATON_GRID_PACKAGE"
BATON_GRIDS = "baton.grids"


class Launcher:
    """Collects the XPs a grid declares; `bind` makes a copy with more overrides preset.
    `config_dir` is the grid's `--config-dir`: a declared XP's `sig` is composed with it, as
    the XP will be run."""

    def __init__(self, overrides: Sequence[str] = (), declared: list[list[str]] | None = None,
                 config_dir: Sequence[str] = ()) -> None:
        self.overrides = list(overrides)
        self.declared: list[list[str]] = [] if declared is None else declared
        self.config_dir = list(config_dir)

    def bind(self, *args: str | Mapping[str, Any], **kwargs: Any) -> Launcher:
        """A new launcher with these overrides added; XPs it declares go to the same grid."""
        return Launcher([*self.overrides, *to_overrides(*args, **kwargs)], self.declared, self.config_dir)

    def bind_(self, *args: str | Mapping[str, Any], **kwargs: Any) -> Launcher:
        """Add overrides to this launcher in place."""
        self.overrides.extend(to_overrides(*args, **kwargs))
        return self

    def slurm(self, **settings: Any) -> Launcher:
        """A copy whose XPs ask SLURM for these resources (`gpus=8, partition="learn"`: the
        keys of the `slurm` config section); used by `baton grid NAME --slurm`, never in the sig."""
        return self.bind({f"slurm.{key}": value for key, value in settings.items()})

    def slurm_(self, **settings: Any) -> Launcher:
        """`slurm`, in place."""
        return self.bind_({f"slurm.{key}": value for key, value in settings.items()})

    def __call__(self, *args: str | Mapping[str, Any], **kwargs: Any) -> DeclaredXP:
        """Declare one XP: this launcher's overrides followed by these. The result's `sig`
        lets a later XP of the grid refer to it (`f"//sig/{codec.sig}"`); XPs run in the
        order declared, so declare a referenced XP first."""
        overrides = [*self.overrides, *to_overrides(*args, **kwargs)]
        self.declared.append(overrides)
        return DeclaredXP(overrides, self.config_dir)


@dataclass
class DeclaredXP:
    overrides: list[str]
    config_dir: Sequence[str] = ()

    @property
    def sig(self) -> str:
        """The XP's signature (composes its config)."""
        from baton.config import compose_xp

        return compose_xp(self.overrides, list(self.config_dir)).sig


@dataclass
class Explorer:
    """A grid's explorer function and the metrics its table shows ('stage.metric')."""

    fn: Callable[[Launcher], None]
    metrics: list[str] = field(default_factory=list)

    def declare(self, config_dir: Sequence[str] = ()) -> list[list[str]]:
        launcher = Launcher(config_dir=config_dir)
        self.fn(launcher)
        return launcher.declared


def explorer(
    fn: Callable[[Launcher], None] | None = None, *, metrics: Sequence[str] = ("train.loss", "valid.loss")
) -> Any:
    """Mark a grid file's function that declares XPs; usable bare or with `metrics=[...]`."""
    if fn is not None:
        return Explorer(fn, list(metrics))
    return lambda f: Explorer(f, list(metrics))


def grid_packages(extra: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(package, where it was named) for the user's grid packages, then baton's: `--package`,
    `BATON_GRID_PACKAGE`, the project file's `grid_package`, `baton.grids`. A project's folder
    becomes importable (last on sys.path), so its grid package is found from any subfolder."""
    packages = [(p, "--package") for p in extra]
    env = os.environ.get(GRID_PACKAGE_ENV, "")
    packages += [(p.strip(), GRID_PACKAGE_ENV) for p in env.replace(",", os.pathsep).split(os.pathsep) if p.strip()]
    project = find_project()
    if project is not None:
        project.make_importable()
        packages += [(p, f"grid_package in {project.file}") for p in project.grid_packages]
    return [*packages, (BATON_GRIDS, "baton")]


def grid_search_places(extra: Sequence[str] = ()) -> str:
    """Where grids were looked for and how to add a package, on one line, for messages."""
    places = ", ".join(f"{package} ({origin})" for package, origin in grid_packages(extra))
    return (
        f"searched {places}{no_project_note()}; add a grid package with --package PKG, "
        f"{GRID_PACKAGE_ENV} or grid_package in {PROJECT_FILE}"
    )


def load_grid(name: str, packages: Sequence[str] = ()) -> Explorer:
    """The explorer of grid `name` ('sweep' or 'compression/debug'), searched in the packages.

    Raises:
        UserError: no such grid (with the list of grids), or a grid file without an explorer.
    """
    dotted = name.replace("/", ".").removesuffix(".py")
    for package, origin in grid_packages(packages):
        _import_package(package, origin)
        module_name = f"{package}.{dotted}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue
            raise
        found = [v for v in vars(module).values() if isinstance(v, Explorer)]
        if len(found) != 1:
            raise UserError(
                f"grid file {module.__file__} must hold exactly one @explorer function, found {len(found)}"
            )
        return found[0]
    known = list_grids(packages)
    raise UserError(
        f"unknown grid '{name}'{did_you_mean(name, known)}; grids: {', '.join(known) or 'none'}; "
        f"{grid_search_places(packages)}"
    )


def list_grids(packages: Sequence[str] = ()) -> list[str]:
    names: set[str] = set()
    for package, origin in grid_packages(packages):
        module = _import_package(package, origin)
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."):
            if not info.ispkg:
                names.add(info.name.removeprefix(f"{package}.").replace(".", "/"))
    return sorted(names)


def _import_package(package: str, origin: str) -> Any:
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise UserError(f"grid package '{package}' (from {origin}) cannot be imported: {exc}") from None
    if not hasattr(module, "__path__"):
        raise UserError(f"grid package '{package}' (from {origin}) is a module, not a package")
    return module
