"""The `baton` command line: the subcommand table, parsing, and one-line user errors.

`baton/__main__.py` is the entry point; a SLURM job (`xp/slurm.py`) runs a command here too,
so both go through the same parsing and error handling. Subcommand modules are imported only
when chosen, so `baton --help` stays fast. Standard library only at import time: the entry
point imports this module before it may import anything from the working directory.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence

# name -> (module, one-line help). The module provides add_arguments(parser) and main(args).
COMMANDS = {
    "run": ("baton.xp.commands.run", "run an XP (resumes it if it exists)"),
    "info": ("baton.xp.commands.info", "show one XP: delta, status, metrics, log"),
    "ls": ("baton.xp.commands.ls", "list every XP under the XP root"),
    "grid": ("baton.xp.commands.grid", "declare, run and monitor a grid of XPs"),
    "check-resume": ("baton.xp.commands.check_resume", "prove that an XP's task resumes exactly (stop, resume, compare)"),
    "export": ("baton.xp.commands.export", "write an XP's weights to a plain file"),
    "data": ("baton.data.cli", "prepare and inspect datasets"),
    "new": ("baton.xp.commands.new", "scaffold a project: solver, config, grid, test, baton.toml"),
}


def _top_parser() -> argparse.ArgumentParser:
    width = max(len(name) for name in COMMANDS)
    lines = "\n".join(f"  {name:<{width}} {help_}" for name, (_, help_) in COMMANDS.items())
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


def run_command(argv: Sequence[str] | None = None) -> int:
    """`baton ARGV`: the subcommand's exit code (a user error: one line on stderr, code 2)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser().parse_args(argv)
    debug = top.debug
    from baton.errors import UserError

    try:
        module = _load(top.command)
        args = _command_parser(top.command, module).parse_intermixed_args(top.args)
        debug = debug or args.debug
        code = int(module.main(args) or 0)  # type: ignore[attr-defined]
        sys.stdout.flush()  # a closed pipe fails here, not at interpreter exit
        return code
    except UserError as exc:
        if debug:
            traceback.print_exc()
        else:
            print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`baton run --dry_run | head`): stop quietly
        from baton.xp.commands.common import closed_pipe

        return closed_pipe()
    except OSError as exc:  # a full disk, a read-only folder, a file where a folder should be
        from baton.errors import file_system_fault

        fault = file_system_fault(exc)
        if fault is None or debug:
            raise
        print(f"error: {fault}", file=sys.stderr)
        return fault.exit_code


