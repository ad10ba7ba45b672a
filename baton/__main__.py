"""The `baton` command: one subcommand per action, each in its own module.

Subcommand modules are imported only when chosen, so `baton --help` stays fast. A user error
(`baton.errors.UserError`) is printed as one line and exits with code 2; `--debug` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence

# name -> (module, one-line help). The module provides add_arguments(parser) and main(args).
COMMANDS = {
    "run": ("baton.xp.commands.run", "run an XP (resumes it if it exists)"),
    "info": ("baton.xp.commands.info", "show one XP: delta, status, metrics, log"),
    "ls": ("baton.xp.commands.ls", "list every XP under the XP root"),
    "grid": ("baton.xp.commands.grid", "declare, run and monitor a grid of XPs"),
    "export": ("baton.xp.commands.export", "write an XP's weights to a plain file"),
    "data": ("baton.data.cli", "prepare and inspect datasets"),
}


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="baton",
        description="Train audio and speech models; manage their experiments (XPs).",
        epilog=f"commands:\n{lines}\n\n`baton COMMAND --help` shows a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def _command_parser(name: str, module: object) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"baton {name}", description=COMMANDS[name][1])
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    module.add_arguments(parser)  # type: ignore[attr-defined]
    return parser


def _load(name: str) -> object:
    module_name = COMMANDS[name][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            from baton.errors import UserError

            raise UserError(f"`baton {name}` is not available in this install ({module_name} is missing)") from None
        raise


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Like `python -m`, make the working directory importable, so a project's solvers
    # (`solver: mypkg.MySolver`) and grids are found without installing the project.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    top = _top_parser().parse_args(argv)
    debug = top.debug
    from baton.errors import UserError

    try:
        module = _load(top.command)
        args = _command_parser(top.command, module).parse_intermixed_args(top.args)
        debug = debug or args.debug
        return int(module.main(args) or 0)  # type: ignore[attr-defined]
    except UserError as exc:
        if debug:
            traceback.print_exc()
        else:
            print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
