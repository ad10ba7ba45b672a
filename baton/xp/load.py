"""`baton.load_model(SIG)`: a trained model, rebuilt from its XP's config and weights.

Like AudioCraft's `model_from_checkpoint`. The model is rebuilt from the XP's stored
`config.yaml` by the solver class that trained it: the class named by the config's `solver`
key (after its `imports:`) implements the classmethod

    build_model_from_config(cfg) -> nn.Module

which its own `build_model` uses too, so there is one way to build the model. Then the chosen
weights ('best', 'ema' or 'last', see `baton.checkpoint.checkpoint_weights`) are loaded into
it, strictly, and it is returned on the CPU in eval mode.

What `sig_or_path` may be:
- a signature (or a unique prefix of one), looked up under the XP root (`BATON_XP_DIR`, the
  environment layer; `config_dir` adds config folders to that lookup);
- an XP folder: its `config.yaml` and newest usable checkpoint;
- a checkpoint file (`checkpoint.th`, `checkpoint_<epoch>.th`, any `*.th`): that file, with the
  `config.yaml` of its folder;
- an exported weights file (`baton export SIG -o model.pt --with-config`): the file, with the
  `model.yaml` written beside it (`which` does not apply: the file holds the weights it was
  exported with).

Checkpoints load as data (`weights_only`); `trusted=True` unpickles anything, as `--trust`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from baton.errors import CheckpointError, ConfigError, UserError
from baton.solver.references import HOOK, SOURCES, load_strict, pick

if TYPE_CHECKING:
    from torch import nn

_CHECKPOINT_NAME = re.compile(r"^checkpoint(_\d+)?\.th$")
_FILE_SUFFIXES = (".th", ".pt", ".pth", ".bin", ".safetensors")


def load_model(
    sig_or_path: str | Path,
    which: str = "best",
    *,
    trusted: bool = False,
    config_dir: Sequence[str] = (),
    name: str | None = None,
) -> nn.Module:
    """The model of an XP, built from its config, with its `which` weights, in eval mode.

    Args:
        sig_or_path: a signature (or unique prefix), an XP folder, a checkpoint file, or an
            exported weights file with its `.yaml` beside it (see the module doc).
        which: 'best' (the state evaluate and generate used), 'ema' or 'last'.
        trusted: load checkpoints with full unpickling (only for files you trust).
        config_dir: extra config folders, as `--config-dir` (where the XP root is looked up).
        name: which registered module to load when the solver registered several (default:
            the only one, else the one named 'model').
    Raises:
        UserError: no such XP or file, no config.yaml, a solver without
            `build_model_from_config`, or weights that do not fit the rebuilt model (each one
            line; CheckpointError and ConfigError are kinds of it).
    """
    if which not in SOURCES:
        raise CheckpointError(f"unknown weights '{which}'; use {', '.join(SOURCES)}")
    source = _resolve(sig_or_path, config_dir)
    cfg = load_config(source.config)
    model = build_model(cfg)  # before reading weights: a solver without the hook fails fast
    weights, where = source.weights(cfg, which, trusted)
    load_strict(model, pick(weights, name, where), where)
    return model.eval()


def build_model(cfg: Any) -> nn.Module:
    """A fresh (untrained) model of the solver `cfg` names, through its build_model_from_config.

    Raises:
        ConfigError: the solver cannot be found, or does not define the hook.
    """
    from torch import nn

    from baton.xp.launch import solver_class

    cls = solver_class(cfg)
    missing = ConfigError(
        f"solver '{cfg.solver}' ({cls.__module__}.{cls.__qualname__}) cannot rebuild its model: "
        f"define the classmethod {HOOK}(cfg) -> nn.Module on it (and use it in build_model)"
    )
    hook = getattr(cls, HOOK, None)
    if not callable(hook):
        raise missing
    try:
        model = hook(cfg)
    except NotImplementedError:  # a base class's placeholder
        raise missing from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{cls.__qualname__}.{HOOK} returned a {type(model).__name__}, not an nn.Module")
    return model


def load_config(path: Path) -> Any:
    """A stored resolved config (config.yaml, model.yaml).

    Raises:
        UserError: missing or damaged.
    """
    from omegaconf import OmegaConf

    if not path.is_file():
        raise UserError(f"no {path.name} in {path.parent}: the model cannot be rebuilt without the XP's config")
    try:
        return OmegaConf.load(path)
    except Exception as exc:  # yaml and OmegaConf raise several types for a damaged file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is corrupt ({first}); restore it") from None


@dataclass(frozen=True)
class _Source:
    """Where a model's config and weights are: an XP folder, a checkpoint file or an export."""

    kind: str  # "folder" | "checkpoint" | "exported"
    path: Path
    config: Path

    def weights(self, cfg: Any, which: str, trusted: bool) -> tuple[dict[str, Any], str]:
        """({registered name: state dict} or one state dict, where they came from)."""
        from baton.checkpoint import checkpoint_weights, read_checkpoint

        if self.kind == "exported":
            return _exported(self.path, trusted), str(self.path)
        if self.kind == "checkpoint":
            data = read_checkpoint(self.path, _sig(cfg), trusted=trusted)
            return checkpoint_weights(data, which, where=str(self.path)), str(self.path)
        from baton.xp_checkpoints import folder_weights

        where = f"the checkpoint in {self.path}"
        return folder_weights(self.path, which, cfg.best_metric, sig=_sig(cfg), trusted=trusted, where=where), where


def _resolve(sig_or_path: str | Path, config_dir: Sequence[str]) -> _Source:
    from baton.xp.folder import CONFIG

    path = Path(sig_or_path).expanduser()
    if path.is_file():
        if path.suffix == ".th" or _CHECKPOINT_NAME.match(path.name):
            return _Source("checkpoint", path, path.parent / CONFIG)
        return _Source("exported", path, path.with_suffix(".yaml"))
    if path.is_dir():
        return _Source("folder", path, path / CONFIG)
    if isinstance(sig_or_path, Path) or "/" in str(sig_or_path) or path.suffix in _FILE_SUFFIXES:
        raise UserError(f"{sig_or_path} does not exist (give a signature, an XP folder or a checkpoint file)")
    from baton.xp.folder import find_xp
    from baton.xp.launch import xp_root

    folder = find_xp(str(sig_or_path), xp_root(config_dir)).path
    return _Source("folder", folder, folder / CONFIG)


def _sig(cfg: Any) -> str | None:
    xp = cfg.get("xp") if hasattr(cfg, "get") else None
    sig = xp.get("sig") if xp is not None else None
    return None if sig is None else str(sig)


def _exported(path: Path, trusted: bool) -> dict[str, Any]:
    """The weights of a `baton export` file: safetensors, or a torch.save state dict."""
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise UserError(f"reading {path} needs the safetensors package: pip install 'baton[safetensors]'") from None
        return dict(load_file(str(path)))
    import torch

    try:
        weights = torch.load(path, map_location="cpu", weights_only=not trusted)
    except Exception as exc:  # refused globals, truncated zips: several types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read weights from {path} ({first})") from None
    if not isinstance(weights, Mapping):
        raise CheckpointError(f"{path} holds a {type(weights).__name__}, not a state dict")
    if weights.get("format") == "baton":
        raise CheckpointError(f"{path} is a baton checkpoint: name it *.th, or pass its XP folder")
    return dict(weights)
