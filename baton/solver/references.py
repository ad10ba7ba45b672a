"""Cross-XP references: one XP's config names another's trained model.

    compression_model_checkpoint: //sig/5af0ebee        # that XP's best state
    classifier_checkpoint: //sig/0c1d2e3f/last          # or /ema, /last
    continue_from: //sig/5af0ebee                       # start from its weights, fresh optimizer

The value stays as written in the config, so the referenced sig is part of the new XP's
signature: a different codec means a different LM XP. It is resolved when the solver needs the
model, against `xp.root` (which `baton.config.compose` fills in), so a grid can lay out a chain
of XPs before the first one has trained. An XP folder (or a path to one) works too.

Refused with one line, naming the config key: a sig with no XP folder, an XP that has not
finished training, and an XP of another model type than the one expected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import CheckpointError, ConfigError
from ..layout import CONFIG, HISTORY, xp_folder

SIG_PREFIX = "//sig/"
SOURCES = ("best", "ema", "last")
HOOK = "build_model_from_config"


@dataclass(frozen=True)
class Reference:
    """A resolved reference: the XP's folder, which weights, its stored config."""

    key: str  # the config key that holds the reference, for messages
    text: str  # the reference as written
    folder: Path
    which: str
    cfg: Any

    @property
    def sig(self) -> str:
        return self.folder.name

    def solver_class(self) -> Any:
        """The class that trained the referenced XP (its config's `imports` imported first)."""
        from .registry import solver_class_of

        return solver_class_of(self.cfg, where=f"{self.key}={self.text}")

    def weights(self) -> dict[str, Any]:
        """{registered module name: state dict} of the chosen weights."""
        from ..xp_checkpoints import brain_save_folder, folder_weights

        weights = folder_weights(
            self.folder, self.which, self.cfg.best_metric, sig=self.sig, where=f"XP {self.sig}",
            no_checkpoint=lambda: ConfigError(f"{self.key}={self.text}: XP {self.sig} has no checkpoint; train it first"),
        )
        if brain_save_folder(self.folder) is None:
            return weights
        nested = bool(weights) and all(isinstance(v, Mapping) for v in weights.values())
        return weights if nested else {"model": weights}  # a Brain with one module

    def model(self, expect: type | None = None, name: str | None = None) -> nn.Module:
        """The referenced XP's model, rebuilt from its config with the chosen weights, on the
        CPU in eval mode (see `build_model_from_config` in docs/loading.md).

        Args:
            expect: the solver class (or a base of it) the reference must have been trained by.
            name: which registered module, when the XP registered several.
        """
        cls = self.solver_class()
        if expect is not None and not (isinstance(cls, type) and issubclass(cls, expect)):
            raise ConfigError(
                f"{self.key}={self.text} is XP {self.sig}, trained by solver '{self.cfg.solver}'; "
                f"this needs an XP of {expect.__name__}: point it to one"
            )
        hook = getattr(cls, HOOK, None)
        if not callable(hook):
            raise ConfigError(f"{self.key}={self.text}: solver '{self.cfg.solver}' has no {HOOK} to rebuild its model")
        model = hook(self.cfg)
        load_strict(model, pick(self.weights(), name, f"XP {self.sig}"), f"XP {self.sig}")
        return model.eval()


def resolve(text: str, xp_root: str | Path | None, key: str, *, finished: bool = True) -> Reference:
    """Resolve `//sig/SIG[/best|ema|last]` (or an XP folder) written in config key `key`.

    Raises:
        ConfigError: no such XP, no config.yaml, an unknown weights choice, or (with
            `finished`) an XP that has not trained all its epochs.
    """
    text = str(text)
    which = "best"
    if text.startswith(SIG_PREFIX):
        parts = text[len(SIG_PREFIX):].strip("/").split("/")
        if not parts[0] or len(parts) > 2 or (len(parts) == 2 and parts[1] not in SOURCES):
            raise ConfigError(f"{key}={text}: write //sig/SIG, or //sig/SIG/best, /ema or /last")
        if len(parts) == 2:
            which = parts[1]
        if xp_root is None:
            raise ConfigError(f"{key}={text}: xp.root is not set; compose the config with baton.config.compose")
        folder = xp_folder(xp_root, parts[0])
        if not folder.is_dir():
            raise ConfigError(
                f"{key}={text}: there is no XP {parts[0]} under {Path(xp_root) / 'xps'}; "
                "run that XP first (or check the sig with baton ls)"
            )
    else:
        folder = Path(text).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"{key}={text}: not an XP folder; give //sig/SIG or the folder of a trained XP")
    config = folder / CONFIG
    if not config.is_file():
        raise ConfigError(f"{key}={text}: {folder} has no config.yaml, so its model cannot be rebuilt")
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(config)
    reference = Reference(key, text, folder, which, cfg)
    if finished:
        done, epochs = trained_epochs(folder), int(cfg.optim.epochs)
        if done < epochs:
            raise ConfigError(
                f"{key}={text}: XP {reference.sig} has trained {done} of its {epochs} epochs; "
                f"finish it first (baton run -f {reference.sig})"
            )
    return reference


def check_references_exist(delta: Iterable[tuple[str, Any]], xp_root: str | Path | None) -> None:
    """Every `//sig/SIG` value of an XP's delta names an XP folder that exists: checked before
    the XP's own folder is made, so a typo leaves nothing behind.

    Raises:
        ConfigError: naming the key, the missing XP and where it was looked for.
    """
    if xp_root is None:
        return
    for key, value in delta:
        for sig in sorted(referenced_sigs([value])):
            if not xp_folder(xp_root, sig).is_dir():
                raise ConfigError(
                    f"{key}={value}: there is no XP {sig} under {Path(xp_root) / 'xps'}; "
                    "run that XP first (or check the sig with baton ls)"
                )


def referenced_sigs(values: Iterable[Any]) -> set[str]:
    """The sigs that `//sig/SIG[/...]` values name (lists searched too): the XPs that must
    finish before one holding these values can start. A grid orders its XPs by them."""
    found: set[str] = set()
    for value in values:
        if isinstance(value, (list, tuple)):
            found |= referenced_sigs(value)
        elif isinstance(value, str) and value.startswith(SIG_PREFIX):
            sig = value[len(SIG_PREFIX):].strip("/").split("/")[0]
            if sig:
                found.add(sig)
    return found


def trained_epochs(folder: Path) -> int:
    """Epochs in the XP's history.jsonl (one line per finished epoch)."""
    history = folder / HISTORY
    if not history.is_file():
        return 0
    return sum(1 for line in history.read_text().splitlines() if line.strip())


def pick(weights: dict[str, Any], name: str | None, where: str) -> Mapping[str, Any]:
    """One module's state dict from {registered name: state dict}, or a plain state dict."""
    nested = bool(weights) and all(isinstance(v, Mapping) for v in weights.values())
    if not nested:
        if name is not None:
            raise CheckpointError(f"{where} holds one state dict, not modules by name; leave out name='{name}'")
        return weights
    if name is None:
        if len(weights) == 1:
            return next(iter(weights.values()))
        name = "model"
    if name not in weights:
        raise CheckpointError(f"{where} holds no module '{name}' (it holds {', '.join(sorted(weights))}); pass name=...")
    state: Mapping[str, Any] = weights[name]
    return state


def load_strict(model: nn.Module, state: Mapping[str, Any], where: str) -> None:
    """load_state_dict(strict), with a one-line error naming what does not fit."""
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} ({', '.join(unexpected[:3])}{', ...' if len(unexpected) > 3 else ''})")
        raise CheckpointError(f"the weights of {where} do not fit the model its config builds: keys {'; '.join(parts)}")
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:  # size mismatches: torch's message is several lines
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else "shape mismatch")
        raise CheckpointError(f"the weights of {where} do not fit the model its config builds: {detail}") from None
