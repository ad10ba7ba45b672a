"""What the working directory and a project's folder may provide on `sys.path`.

`baton` makes both importable, so a project's own modules are found (`solver: mypkg.MySolver`,
`imports: [mypkg]`, grids) without installing the project. Both go last, after the standard
library and site-packages, so a stray `rich.py` or `omegaconf.py` never shadows a library. And
their entries find modules through `ProjectFinder`, which never answers for an optional package
(`OPTIONAL_PACKAGES`): last on the path, a folder would still provide one that is not installed,
and a stray `wandb.py` or `torchaudio.py` would run when something probes for the real one.

Standard library only: the `baton` entry point imports this before the working directory is
moved, when anything else imported could come from there.
"""

from __future__ import annotations

import importlib.machinery as machinery
import os
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType

# Packages baton or its libraries import when installed and do without otherwise.
OPTIONAL_PACKAGES = frozenset({
    "wandb", "mlflow", "matplotlib", "submitit", "safetensors", "tensorboard", "speechbrain",
    "torchaudio", "torchvision", "librosa", "pesq", "pystoi", "visqol", "speechmos",
    "resemblyzer", "numba", "IPython", "tqdm", "pandas", "scipy", "sklearn",
})


class ProjectFinder:
    """How a project folder's entry on sys.path finds modules: as Python's own file finder
    does, but never an `OPTIONAL_PACKAGES` name, which may only come from where it is installed
    (so a probe for one that is not installed finds nothing, as it would anywhere else)."""

    def __init__(self, folder: str) -> None:
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


def append_project_folder(folder: str) -> None:
    """`folder` last on sys.path (once), its modules found through a `ProjectFinder`."""
    for entry in sys.path:
        try:
            if os.path.abspath(entry or ".") == folder:
                break
        except (OSError, ValueError):
            continue
    else:
        sys.path.append(folder)
    sys.path_importer_cache[folder] = ProjectFinder(folder)


def working_directory_last(path: list[str]) -> None:
    """Move the working directory (`''`, `'.'` or its full path) to the end of `path`, in place
    (on `sys.path`, found through a `ProjectFinder`)."""
    cwd = os.getcwd()

    def is_cwd(entry: str) -> bool:
        try:
            return entry in ("", ".") or os.path.abspath(entry) == cwd
        except (OSError, ValueError):
            return False

    path[:] = [entry for entry in path if not is_cwd(entry)] + [cwd]
    if path is sys.path:
        sys.path_importer_cache[cwd] = ProjectFinder(cwd)
