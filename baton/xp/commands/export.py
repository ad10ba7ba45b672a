"""`baton export SIG -o FILE`: an XP's weights as a plain state dict, loadable without baton."""

from __future__ import annotations

import argparse

from baton.xp.commands.common import add_config_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sig", metavar="SIG", help="the XP's signature")
    parser.add_argument("-o", "--output", required=True, help="file to write (torch.save format)")
    parser.add_argument(
        "--source",
        choices=("best", "ema", "last"),
        default="best",
        help="which weights: the best state (default), the EMA, or the latest",
    )
    add_config_dir(parser)


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from baton.checkpoint import exported_weights
    from baton.xp.folder import find_xp
    from baton.xp.launch import xp_root

    folder = find_xp(args.sig, xp_root(args.config_dir))
    weights = exported_weights(folder.path, args.source)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    torch.save(weights, tmp)
    tmp.replace(output)
    print(f"wrote {args.source} weights of XP {folder.sig} to {output} ({len(weights)} entries)")
    return 0
