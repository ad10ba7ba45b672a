"""Compose an XP's config: Hydra groups + overrides, checked, signed, placed, resolved.

`compose(overrides)` is the one way to get a config: the CLI, grids, notebooks and tests all
call it, so a solver sees the same thing wherever it runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from baton.config import signature as sig_mod
from baton.config.env import Env, load_env
from baton.config.overrides import Override, dedupe, parse_overrides
from baton.config.project import find_project, unique
from baton.config.reference import resolve_references
from baton.config.search import config_dirs, find_config_file, group_options, search_places
from baton.errors import ConfigError, did_you_mean, yaml_error_line
from baton.layout import xp_folder

if TYPE_CHECKING:
    from omegaconf import DictConfig

ROOT_CONFIG = "config"


@dataclass
class Composition:
    """A composed XP: its resolved config and how it differs from the defaults."""

    cfg: DictConfig
    overrides: list[str]
    delta: sig_mod.Delta
    sig: str
    env: Env
    choices: dict[str, str | None]
    config_dirs: list[Path]
    # Every leaf that shapes the run, as composed (before interpolations and //reference paths
    # are resolved, so it is the same on every cluster), minus `xp.exclude`: what an XP's
    # stored copy is compared with before it resumes (config drift).
    settings: dict[str, Any]

    @property
    def folder(self) -> Path:
        return Path(self.cfg.xp.folder)


def compose(overrides: Sequence[str] = (), config_dir: str | Sequence[str] | None = None) -> DictConfig:
    """The resolved config for `overrides`, in struct mode, with `xp.sig` and `xp.folder` set.

    Raises:
        ConfigError: one line naming the bad override, key or value, and the fix.
    """
    return compose_xp(overrides, config_dir).cfg


def compose_xp(overrides: Sequence[str] = (), config_dir: str | Sequence[str] | None = None) -> Composition:
    """Like `compose`, and also return the delta, signature and environment."""
    from omegaconf import OmegaConf, open_dict

    dirs = config_dirs(config_dir)
    overrides = dedupe(overrides)
    parsed = parse_overrides(overrides, dirs)
    groups = [o for o in parsed if o.is_group]
    values = [o for o in parsed if not o.is_group]
    for override in groups:
        _check_group_option(override, dirs, config_dir)

    # The solver's own choices are the reference a group choice is compared with.
    solver_only = [o.text for o in groups if o.key == "solver"]
    reference = None
    if len(solver_only) != len(groups):
        _, reference = _hydra_compose(dirs, solver_only)
        for override in groups:
            if not override.prefix and override.key not in reference:
                raise ConfigError(
                    f"config group '{override.key}' is not in the defaults of this solver: "
                    f"add it with +{override.text}"
                )
    base, base_choices = _hydra_compose(dirs, [o.text for o in groups])
    reference = base_choices if reference is None else reference
    coerced = _check_values(values, base)
    if values:
        full, choices = _hydra_compose(dirs, overrides)
        for key, value in coerced.items():
            OmegaConf.update(full, key, value, merge=False)
    else:
        full, choices = base, base_choices

    plain = _plain(full)
    delta = sig_mod.leaf_delta(_plain(base), plain) + sig_mod.choice_delta(reference, choices)
    delta = sig_mod.exclude(delta, list(full.xp.exclude or []))
    sig = sig_mod.signature(delta)
    settings = dict(sig_mod.exclude(sig_mod.flatten(plain).items(), list(full.xp.exclude or [])))
    patterns = list(full.xp.exclude or [])
    settings.update({f"<group {group}>": option for group, option in sig_mod.exclude(choices.items(), patterns)})

    env = load_env(dirs, xp_root=full.xp.root)
    _check_missing(full, choices, dirs)
    with open_dict(full):
        full.xp.root = env.xp_root
        full.xp.sig = sig
        full.xp.folder = str(xp_folder(env.xp_root, sig))
        full.xp.delta = {str(key): _plain_value(value) for key, value in delta}
        full.env = env.as_dict()
        full.imports = _with_project_imports(full.get("imports"))
    _resolve(full)
    resolve_references(full, env)
    OmegaConf.set_struct(full, True)
    return Composition(
        cfg=full,
        overrides=overrides,
        delta=delta,
        sig=sig,
        env=env,
        choices=choices,
        config_dirs=list(dirs),
        settings=settings,
    )


def _hydra_compose(dirs: Sequence[Path], overrides: Sequence[str]) -> tuple[DictConfig, dict[str, str | None]]:
    import yaml
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    from baton.config.overrides import format_value

    extra = []
    if len(dirs) > 1:
        extra = [f"hydra.searchpath={format_value([f'file://{d}' for d in dirs[1:]])}"]
    try:
        with initialize_config_dir(config_dir=str(dirs[0]), version_base=None):
            cfg = hydra_compose(ROOT_CONFIG, overrides=[*overrides, *extra], return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_one_line(exc)) from None
    except yaml.YAMLError as exc:  # a user's config file that is not valid YAML
        raise ConfigError(yaml_error_line(exc)) from None
    choices = {
        str(k): (None if v is None else str(v))
        for k, v in cfg.hydra.runtime.choices.items()
        if not str(k).startswith("hydra/")
    }
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    cause = exc.__cause__
    if cause is not None and str(cause).strip():
        lines.append(str(cause).strip().splitlines()[0])
    return "; ".join(lines[:2]) if lines else type(exc).__name__


def _plain(cfg: DictConfig) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=False)  # type: ignore[return-value]


def _check_group_option(
    override: Override, dirs: Sequence[Path], config_dir: str | Sequence[str] | None = None
) -> None:
    if override.prefix == "~" or override.value is None:
        return
    options = group_options(override.key, dirs)
    if not isinstance(override.value, str) or override.value not in options:
        option = str(override.value)
        raise ConfigError(
            f"unknown option '{option}' for config group '{override.key}' in '{override.text}'"
            f"{did_you_mean(option, options)}; options: {', '.join(options)}; {search_places(config_dir)}"
        )


def _with_project_imports(imports: Any) -> list[str]:
    """The config's `imports:` followed by the project file's `imports`, each once; the
    project's folder becomes importable. After the signature and the stored settings are taken:
    where a project lists its modules never changes an XP."""
    modules = [str(m) for m in (imports or [])]
    project = find_project()
    if project is None:
        return modules
    project.make_importable()
    return unique([*modules, *project.imports])


def _check_values(values: Sequence[Override], base: DictConfig) -> dict[str, Any]:
    """Check plain `key=value` overrides against the composed defaults, key and type.

    Returns values to write back with the default's type (`optim.lr=1` stays a float), so two
    spellings of one value always give one signature.
    """
    flat = sig_mod.flatten(_plain(base))
    known = set(flat)
    for key in flat:
        parts = key.split(".")
        known.update(".".join(parts[:i]) for i in range(1, len(parts)))
    coerced: dict[str, Any] = {}
    for override in values:
        if override.prefix:
            continue  # '+' adds, '~' deletes: Hydra checks those itself.
        if override.key not in known:
            raise ConfigError(
                f"unknown config key '{override.key}'{did_you_mean(override.key, flat)}; "
                f"add a new key with +{override.text}"
            )
        if override.key in flat:
            value = _checked_type(override, flat[override.key])
            if value is not override.value:
                coerced[override.key] = value
    return coerced


def _checked_type(override: Override, default: Any) -> Any:
    value = override.value
    if default is None or value is None or (isinstance(value, str) and "${" in value):
        return value
    if isinstance(default, str) and ("${" in default or default == "???"):
        return value
    expected = None
    if isinstance(default, bool):
        expected = "a bool (true/false)" if not isinstance(value, bool) else None
    elif isinstance(default, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        expected = "an int" if isinstance(value, bool) or not isinstance(value, int) else None
    elif isinstance(default, float):
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        expected = "a number" if not isinstance(value, float) else None
    elif isinstance(default, list):
        expected = "a list, e.g. [a,b]" if not isinstance(value, list) else None
    elif isinstance(default, dict):
        expected = "a mapping, e.g. {a:1}" if not isinstance(value, dict) else None
    elif isinstance(value, (list, dict)):
        expected = "a single value"
    if expected:
        raise ConfigError(
            f"config key '{override.key}' expects {expected}, got {value!r} in '{override.text}'"
        )
    return value


def _check_missing(cfg: DictConfig, choices: Mapping[str, str | None], dirs: Sequence[Path]) -> None:
    from omegaconf import OmegaConf

    missing = sorted(OmegaConf.missing_keys(cfg))
    if not missing:
        return
    key = missing[0]
    if key == "solver":
        options = [o for o in group_options("solver", dirs) if o != "default"]
        raise ConfigError(f"no solver chosen: add solver=<name>; options: {', '.join(options)}")
    where = _owner_file(key, choices, dirs)
    raise ConfigError(
        f"config key '{key}' has no value (???): set it in {where} or pass {key}=... "
        "on the command line"
    )


def _owner_file(key: str, choices: Mapping[str, str | None], dirs: Sequence[Path]) -> str:
    """The chosen group file a missing key belongs in: one that mentions it, else the one whose
    package is the longest prefix of the key."""
    from omegaconf import OmegaConf

    best: tuple[int, str] | None = None
    for group, option in choices.items():
        if option is None:
            continue
        path = find_config_file(group, option, dirs)
        if path is None:
            continue
        package = _package(path, group)
        if package == "_global_":
            relative, score = key, 0
        elif key.startswith(package + "."):
            relative, score = key[len(package) + 1:], len(package) + 1
        else:
            continue
        mentions = OmegaConf.select(OmegaConf.load(path), relative, throw_on_missing=False)
        if mentions is not None:
            score += 1000
        name = f"{group}/{option}.yaml"
        if best is None or score >= best[0]:
            best = (score, name)
    return best[1] if best else "your config (no group file holds it)"


def _package(path: Path, group: str) -> str:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            stripped = line.strip()
            if stripped.startswith("# @package"):
                return stripped.split(None, 2)[2].strip()
            if stripped and not stripped.startswith("#"):
                break
    return group.replace("/", ".")


def _resolve(cfg: DictConfig) -> None:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        where = f"config key '{key}': " if key else ""
        raise ConfigError(f"{where}{_one_line(exc)}") from None


def _plain_value(value: Any) -> Any:
    """A delta value as config data: lists and scalars as they are, anything else as text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain_value(v) for v in value]
    return str(value)
