"""The `baton` command: one subcommand per action, each in its own module (see `baton.xp.cli`).

A user error (`baton.errors.UserError`) is printed as one line and exits with code 2;
`--debug` shows the traceback instead.

The working directory is importable, but last on `sys.path` (after site-packages), whether
baton runs as the `baton` script or as `python -m baton`: a project's own modules are found,
and a file there named like a library (`rich.py`, `omegaconf.py`) is never imported instead;
nor one named like an optional package that is not installed (`wandb.py`, `torchaudio.py`:
`baton.import_paths.OPTIONAL_PACKAGES`), which only its installed copy may provide.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from baton.import_paths import working_directory_last
from baton.xp.cli import run_command

if __name__ == "__main__":
    working_directory_last(sys.path)


def main(argv: Sequence[str] | None = None) -> int:
    # Make the working directory importable, so a project's solvers (`solver: mypkg.MySolver`)
    # and grids are found without installing the project; last, so it never shadows a library.
    working_directory_last(sys.path)
    return run_command(argv)


__all__ = ["main", "working_directory_last"]

if __name__ == "__main__":
    sys.exit(main())
