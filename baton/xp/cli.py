"""The `baton` command line: the subcommand table, parsing, and one-line user errors.

`baton/__main__.py` is the entry point; a SLURM job (`xp/slurm.py`) runs a command here too,
so both go through the same parsing and error handling. Subcommand modules are imported only
when chosen, so `baton --help` stays fast. Standard library only at import time: the entry
point imports this module before it may import anything from the working directory.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


def working_directory_last(path: list[str]) -> None:
    """Move the working directory (`''`, `'.'` or its full path) to the end of `path`, in place.

    A project's modules stay importable from where `baton` runs (`solver: mypkg.MySolver`,
    `imports: [mypkg]`, grids), but a stray `rich.py` or `omegaconf.py` there can never shadow
    a library: site-packages comes first.
    """
    cwd = os.getcwd()

    def is_cwd(entry: str) -> bool:
        try:
            return entry in ("", ".") or os.path.abspath(entry) == cwd
        except (OSError, ValueError):
            return False

    path[:] = [entry for entry in path if not is_cwd(entry)] + [cwd]
    if path is sys.path:
        sys.path_importer_cache[cwd] = ProjectFinder(cwd)


# Packages baton or its libraries import when installed and do without otherwise. Last on
# sys.path, the working directory still answers for a package that is not installed: a stray
# `wandb.py` or `torchaudio.py` there would run when something probes for the real one.
OPTIONAL_PACKAGES = frozenset({
    "wandb", "mlflow", "matplotlib", "submitit", "safetensors", "tensorboard", "speechbrain",
    "torchaudio", "torchvision", "librosa", "pesq", "pystoi", "visqol", "speechmos",
    "resemblyzer", "numba", "IPython", "tqdm", "pandas", "scipy", "sklearn",
})


class ProjectFinder:
    """How the working directory's entry on sys.path finds modules: as Python's own file finder
    does, but never an `OPTIONAL_PACKAGES` name, which may only come from where it is installed
    (so a probe for one that is not installed finds nothing, as it would anywhere else)."""

    def __init__(self, folder: str) -> None:
        import importlib.machinery as machinery

        self.files = machinery.FileFinder(
            folder,
            (machinery.ExtensionFileLoader, machinery.EXTENSION_SUFFIXES),
            (machinery.SourceFileLoader, machinery.SOURCE_SUFFIXES),
            (machinery.SourcelessFileLoader, machinery.BYTECODE_SUFFIXES),
        )

    def find_spec(self, fullname: str, target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname.partition(".")[0] in OPTIONAL_PACKAGES:
            return None
        return self.files.find_spec(fullname, target)

    def invalidate_caches(self) -> None:
        self.files.invalidate_caches()


# `python -m baton` has put the working directory first on sys.path: move it before anything
# else is imported (the console script never has it there; `main` adds it at the end).


# name -> (module, one-line help). The module provides add_arguments(parser) and main(args).
COMMANDS = {
    "run": ("baton.xp.commands.run", "run an XP (resumes it if it exists)"),
    "info": ("baton.xp.commands.info", "show one XP: delta, status, metrics, log"),
    "ls": ("baton.xp.commands.ls", "list every XP under the XP root"),
    "grid": ("baton.xp.commands.grid", "declare, run and monitor a grid of XPs"),
    "export": ("baton.xp.commands.export", "write an XP's weights to a plain file"),
    "data": ("baton.data.cli", "prepare and inspect datasets"),
    "new": ("baton.xp.commands.new", "scaffold a project: solver, config, grid, test, baton.toml"),
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


