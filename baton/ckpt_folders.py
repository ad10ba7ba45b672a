"""SpeechBrain's checkpoint layout on disk: one `CKPT+<time>/` folder per checkpoint, a
`CKPT.yaml` of meta, one `<name>.ckpt` file per recoverable; reading and ranking such folders.

The bottom layer of the Brain front end's checkpoints: `baton.speechbrain.Checkpointer` writes
and loads them, and the XP tools (`baton.xp_checkpoints`: info, export, load_model,
references) read a Brain XP's weights through these functions without the front end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
import yaml

from .atomic import fsync_dir, stale_temporaries
from .checkpoint import load_file
from .errors import CheckpointError, yaml_error_line

CKPT_PREFIX = "CKPT"
METAFNAME = f"{CKPT_PREFIX}.yaml"
META_TENSORS = f"{CKPT_PREFIX}.tensors.pt"  # the meta's tensors, as data (read with weights_only)
PARAMFILE_EXT = ".ckpt"

ImportanceKey = Callable[["Checkpoint"], Any]
Predicate = Callable[["Checkpoint"], bool]


class Checkpoint(NamedTuple):
    """One saved checkpoint, as found on disk.

    `path` is the CKPT folder, `meta` the dict of its CKPT.yaml (always with `unixtime` and
    `end-of-epoch`), `paramfiles` maps each recoverable's name to its `<name>.ckpt` file.
    Hashed by path, so checkpoints can be collected in sets (as SpeechBrain's are).
    """

    path: Path
    meta: dict[str, Any]
    paramfiles: dict[str, Path]

    def __hash__(self) -> int:
        return hash(self.path)


def ckpt_recency(ckpt: Checkpoint) -> float:
    """Recency as an importance key: the newest checkpoint ranks highest."""
    return float(ckpt.meta.get("unixtime", 0.0))


def list_checkpoint_folders(checkpoints_dir: Path) -> list[Checkpoint]:
    """Every complete checkpoint in `checkpoints_dir` (a `CKPT+*` folder with a CKPT.yaml),
    in no particular order.

    Raises:
        CheckpointError: a CKPT.yaml that is not a YAML mapping (fix or remove the folder).
    """
    if not checkpoints_dir.is_dir():
        return []
    found = []
    for folder in checkpoints_dir.iterdir():
        if not folder.name.startswith(f"{CKPT_PREFIX}+"):
            continue
        checkpoint = read_checkpoint_folder(folder)
        if checkpoint is not None:
            found.append(checkpoint)
    return found


def rank_checkpoints(
    checkpoints: list[Checkpoint],
    importance_key: ImportanceKey | None = None,
    max_key: str | None = None,
    min_key: str | None = None,
    ckpt_predicate: Predicate | None = None,
) -> list[Checkpoint]:
    """Checkpoints best first: by `importance_key` (highest first), the highest `max_key`
    or the lowest `min_key` in the meta, else the most recent. With a meta key, only
    checkpoints that have it are candidates. Ties go to the more recent checkpoint.
    """
    if sum(key is not None for key in (importance_key, max_key, min_key)) > 1:
        raise ValueError("give at most one of importance_key, max_key and min_key")
    has_key = max_key if max_key is not None else min_key
    if max_key is not None:
        importance_key = meta_value(max_key, sign=1)
    elif min_key is not None:
        importance_key = meta_value(min_key, sign=-1)
    elif importance_key is None:
        importance_key = ckpt_recency
    candidates = [
        ckpt for ckpt in checkpoints
        if (has_key is None or has_key in ckpt.meta)
        and (ckpt_predicate is None or ckpt_predicate(ckpt))
    ]
    candidates.sort(key=recency_order, reverse=True)
    return sorted(candidates, key=importance_key, reverse=True)  # stable: ties stay newest first


# Hidden folders this process is building right now: not stale, whatever their name says.
IN_PROGRESS: set[Path] = set()
_TEMPORARY_PID = re.compile(r"\.(\d+)\.[0-9a-f]+\.tmp$")


def remove_stale_checkpoint_folders(folder: Path) -> None:
    """Remove hidden checkpoint folders left by a crashed save or delete: those of a dead
    process, or of this process's pid (a restarted container) that it is not building now."""
    for path in stale_temporaries(folder, f"{CKPT_PREFIX}+*"):
        found = _TEMPORARY_PID.search(path.name)
        if path in IN_PROGRESS or (found and _process_alive(int(found.group(1)))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours and not in progress: left by an earlier process with our pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    return True


def fsync_tree(folder: Path) -> None:
    """fsync every file under `folder` (savers may write files of their own), then the folders."""
    for root, _dirs, files in os.walk(folder):
        for file in files:
            fd = os.open(os.path.join(root, file), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(root))


def existing_parent(path: Path) -> Path:
    """`path` or its nearest existing parent (what `write_failure` can measure)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def plain_meta(value: Any, key: str = "meta") -> Any:
    """`value` as plain YAML data: tensors and numpy values become numbers or lists, tuples
    lists; anything else that YAML cannot hold without running code on load is refused."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalars and arrays
        return value.item() if getattr(value, "size", 1) == 1 else value.tolist()
    if isinstance(value, Mapping):
        return {k: plain_meta(v, f"{key}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_meta(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"checkpoint {key} is a {type(value).__qualname__}, which CKPT.yaml cannot hold; "
        "pass a number, string, bool, list or dict"
    )


def meta_tensors(value: Any, path: tuple[Any, ...] = ()) -> dict[str, torch.Tensor]:
    """The tensors inside a meta, by their path (a JSON list of keys and indices): CKPT.yaml
    holds their numbers, `CKPT.tensors.pt` the tensors themselves, so the meta read back holds
    tensors again, with their dtype and shape."""
    if isinstance(value, torch.Tensor):
        return {json.dumps(list(path)): value.detach().cpu().clone()}
    found: dict[str, torch.Tensor] = {}
    if isinstance(value, Mapping):
        for key, item in value.items():
            found.update(meta_tensors(item, (*path, key)))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found.update(meta_tensors(item, (*path, index)))
    return found


def put_back_tensors(meta: dict[str, Any], tensors: Mapping[str, torch.Tensor], folder: Path) -> None:
    """Put `meta_tensors`' tensors back at their paths in `meta` (in place)."""
    for where, tensor in tensors.items():
        parent: Any = meta
        try:
            keys = json.loads(where)
            if not isinstance(tensor, torch.Tensor) or not isinstance(keys, list) or not keys:
                raise TypeError
            for key in keys[:-1]:
                parent = parent[key]
            parent[keys[-1]] = tensor
        except (KeyError, IndexError, TypeError, ValueError):
            raise CheckpointError(f"{folder / META_TENSORS} names meta entry {where}, which {folder / METAFNAME} "
                                  f"lacks; restore the file or delete {folder}") from None


def _saved_tensors(folder: Path) -> dict[str, torch.Tensor]:
    path = folder / META_TENSORS
    if not path.is_file():
        return {}
    try:
        return dict(load_file(path))
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; or delete {folder}") from None


def read_checkpoint_folder(folder: Path) -> Checkpoint | None:
    """The checkpoint in `folder`, or None when it is not one (or was just deleted)."""
    meta_path = folder / METAFNAME
    try:
        with open(meta_path, encoding="utf-8") as handle:  # errors then name the file
            meta = yaml.safe_load(handle)
        files = list(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{yaml_error_line(exc)} or delete {folder}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_path} is not a YAML mapping; fix it or delete {folder}")
    put_back_tensors(meta, _saved_tensors(folder), folder)
    paramfiles = {path.stem: path for path in files if path.suffix == PARAMFILE_EXT}
    return Checkpoint(folder, meta, paramfiles)


def recency_order(ckpt: Checkpoint) -> tuple[float, list[Any]]:
    """Newest by unixtime; equal times by folder name, numbers compared as numbers (+100 > +99)."""
    name = [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", ckpt.path.name)]
    return ckpt_recency(ckpt), name


def meta_value(key: str, *, sign: int) -> ImportanceKey:
    def value(ckpt: Checkpoint) -> Any:
        number = ckpt.meta[key]
        return sign * (number.item() if isinstance(number, torch.Tensor) and number.numel() == 1 else number)

    return value
