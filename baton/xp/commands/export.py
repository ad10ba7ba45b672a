"""`baton export SIG -o FILE`: an XP's weights as a plain state dict, loadable without baton.

`FILE.safetensors` is written with the safetensors package (an optional extra): names of
several registered models become prefixes (`model.net.0.weight`). Any other name gets
`torch.save` of the state dict, loadable with `torch.load(FILE, weights_only=True)`.

`--with-config` also writes the XP's resolved `config.yaml` beside it, as `FILE` with the suffix
`.yaml` (`model.pt` -> `model.yaml`): what `baton.load_model("model.pt")` rebuilds the model
from, with no XP folder around.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from baton.errors import UserError
from baton.xp.commands.common import add_config_dir, add_trust, quiet_on_closed_pipe

SAFETENSORS_HINT = "pip install 'baton[safetensors]'"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sig", metavar="SIG", help="the XP's signature")
    parser.add_argument(
        "-o", "--output", required=True,
        help="file to write: safetensors when it ends in .safetensors, else torch.save format",
    )
    parser.add_argument(
        "--source",
        choices=("best", "ema", "last"),
        default="best",
        help="which weights: the best state (default), the EMA, or the latest",
    )
    parser.add_argument(
        "--with-config",
        action="store_true",
        help="also write the XP's config.yaml beside FILE, as FILE with the suffix .yaml "
        "(model.pt -> model.yaml), so baton.load_model(FILE) can rebuild the model",
    )
    add_trust(parser)
    add_config_dir(parser)


@quiet_on_closed_pipe
def main(args: argparse.Namespace) -> int:
    from baton.xp.folder import find_xp
    from baton.xp.launch import xp_root
    from baton.xp_checkpoints import xp_weights

    output = Path(args.output)
    as_safetensors = output.suffix == ".safetensors"
    if as_safetensors:
        _require_safetensors()  # before loading anything: fail fast on a missing extra
    folder = find_xp(args.sig, xp_root(args.config_dir))
    config = config_beside(output) if args.with_config else None
    config_text = _config_text(folder.path) if config is not None else None  # before writing anything
    weights = xp_weights(folder.path, args.source, _best_metric(folder.path), trusted=args.trust, sig=folder.sig)
    output.parent.mkdir(parents=True, exist_ok=True)
    if as_safetensors:
        metadata = {"format": "pt", "baton_sig": folder.sig, "baton_source": args.source}
        count = write_safetensors(weights, output, metadata)
    else:
        count = write_torch(weights, output)
    print(f"wrote {args.source} weights of XP {folder.sig} to {output} ({count} entries)")
    if config is not None and config_text is not None:
        from baton.atomic import write_text_atomic

        write_text_atomic(config, config_text)
        print(f"wrote its config to {config}")
    return 0


def config_beside(output: Path) -> Path:
    """Where `--with-config` writes the config: `model.pt` -> `model.yaml`.

    Raises:
        UserError: the output itself ends in .yaml (the config would replace the weights).
    """
    config = output.with_suffix(".yaml")
    if config == output:
        raise UserError(f"--with-config writes {config}, which is the output file itself; name the weights *.pt")
    return config


def _config_text(folder: Path) -> str:
    from baton.xp.folder import CONFIG

    path = folder / CONFIG
    if not path.is_file():
        raise UserError(f"no {CONFIG} in {folder}: the XP never ran (`baton run -f {folder.name}`), so there is no config to export")
    return path.read_text()


def write_torch(weights: Mapping[str, Any], output: Path) -> int:
    """torch.save, atomically. Returns the number of top-level entries."""
    import torch

    from baton.atomic import atomic_write

    atomic_write(output, lambda handle: torch.save(weights, handle))
    return len(weights)


def write_safetensors(
    weights: Mapping[str, Any], output: Path, metadata: dict[str, str] | None = None
) -> int:
    """A safetensors file, atomically. Returns the number of tensors.

    safetensors refuses tensors that share memory (tied weights) or are not contiguous, so
    each tensor is written from its own contiguous copy.
    """
    import torch

    from baton.atomic import write_bytes_atomic

    save = _require_safetensors()
    tensors = {
        name: value.detach().cpu().clone(memory_format=torch.contiguous_format)
        for name, value in flatten_tensors(weights).items()
    }
    write_bytes_atomic(output, save(tensors, metadata=metadata))
    return len(tensors)


def flatten_tensors(weights: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'model': {'net.0.weight': t}} -> {'model.net.0.weight': t}; a flat state dict stays as
    it is.

    Raises:
        UserError: a value is neither a tensor nor a dict of them (safetensors holds tensors only).
    """
    import torch

    flat: dict[str, Any] = {}
    for key, value in weights.items():
        name = f"{prefix}{key}"
        if isinstance(value, torch.Tensor):
            flat[name] = value
        elif isinstance(value, Mapping):
            flat.update(flatten_tensors(value, f"{name}."))
        else:
            raise UserError(
                f"cannot export '{name}' ({type(value).__name__}) to safetensors, which holds "
                "tensors only; export to a .pt file instead"
            )
    return flat


def _require_safetensors() -> Any:
    """`safetensors.torch.save`, or a one-line error naming the extra to install."""
    try:
        from safetensors.torch import save
    except ImportError:
        raise UserError(
            f"writing a .safetensors file needs the safetensors package: {SAFETENSORS_HINT} "
            "(or export to a .pt file)"
        ) from None
    return save


def _best_metric(folder: Path) -> object:
    """The XP's best_metric section (it picks a Brain XP's best checkpoint); the default when
    the XP has no readable config."""
    from omegaconf import OmegaConf

    from baton.xp.folder import CONFIG

    try:
        return OmegaConf.load(folder / CONFIG).best_metric
    except (OSError, AttributeError):  # no config.yaml (an XP that never started): engine XPs do not need it
        return OmegaConf.create({"name": "loss", "direction": "min"})
