"""User-facing errors: one clear line naming what is wrong and how to fix it.

The CLI prints `str(error)` and exits with code 2 (no traceback unless `--debug`). Raise these
for bad input (config, CLI arguments, audio files, checkpoints), never for bugs in baton.
"""


class UserError(Exception):
    """Bad input from the user. The message is one line: what, where, and the fix."""

    exit_code = 2


class ConfigError(UserError):
    """A config key, value, group option or override is wrong."""


class CheckpointError(UserError):
    """A checkpoint file is truncated, unreadable, or belongs to another XP."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint holds pickled objects beyond tensors and plain values: loading it could run
    arbitrary code, so it is refused unless the user says they trust the file."""


class DataError(UserError):
    """An audio file or manifest line cannot be used."""


def yaml_error_line(exc: Exception) -> str:
    """'invalid YAML in FILE line N: problem' from a yaml error, on one line."""
    mark = getattr(exc, "problem_mark", None)
    where = f"{mark.name} line {mark.line + 1}" if mark is not None else "a config file"
    problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
    return f"invalid YAML in {where}: {problem}; fix the file"


class DistributedError(UserError):
    """Ranks disagree on something they must share (e.g. the model they built)."""
