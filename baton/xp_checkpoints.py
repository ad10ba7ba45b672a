"""An XP's checkpoints, in either layout, for the tools that read them (`info`, `export`,
`baton.load_model`, the done check of `run`).

Solvers on the engine write `checkpoint.th` (see `baton.checkpoint`). A Brain run as an XP
writes through its Checkpointer into `save/` (SpeechBrain's layout: `CKPT+<time>/` folders
with one `<name>.ckpt` per recoverable); its "best" is the checkpoint whose CKPT.yaml holds the
best value of the XP's `best_metric.name` (as the recipe saved it in `meta`), its "last" the newest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from baton.checkpoint import LATEST, exported_weights, load_file
from baton.ckpt_folders import Checkpoint, list_checkpoint_folders, rank_checkpoints
from baton.errors import CheckpointError

BRAIN_CHECKPOINTS = "save"  # where a Brain XP's Checkpointer writes (baton.tasks.classification)


def brain_save_folder(folder: Path) -> Path | None:
    """The checkpoints folder of a Brain XP in `folder`, or None when it is not one."""
    path = Path(folder) / BRAIN_CHECKPOINTS
    if not path.is_dir() or (Path(folder) / LATEST).exists():
        return None
    return path


def find_brain_checkpoint(save: Path, *, max_key: str | None = None, min_key: str | None = None) -> Checkpoint | None:
    """The newest checkpoint in a Brain XP's `save` folder, or the best by a meta key."""
    ranked = rank_checkpoints(list_checkpoint_folders(save), max_key=max_key, min_key=min_key)
    return ranked[0] if ranked else None


def last_checkpoint_time(folder: Path) -> float | None:
    """When the XP's newest checkpoint was written (its file's mtime), None without one."""
    latest = Path(folder) / LATEST
    if latest.exists():
        return latest.stat().st_mtime
    save = brain_save_folder(folder)
    found = find_brain_checkpoint(save) if save is not None else None
    return None if found is None else (found.path / "CKPT.yaml").stat().st_mtime


def describe_latest(folder: Path, *, trusted: bool = False) -> str:
    """'epoch 3 (checkpoint.th)' or 'epoch 3 (save/CKPT+...)' for `baton info`."""
    from baton.checkpoint import read_checkpoint
    from baton.errors import UnsafeCheckpointError, UserError

    path = Path(folder) / LATEST
    save = brain_save_folder(folder)
    try:
        if save is not None:
            found = find_brain_checkpoint(save)
            if found is None:
                return "none"
            loop = load_file(found.paramfiles["brain"], trusted=trusted)["engine"]["loop"]
            # Saved in on_stage_end, the epoch's results are not yet in the history: it is whole.
            done = len(loop["history"]) + (1 if found.meta.get("end-of-epoch") and loop["epoch_results"] else 0)
            return f"epoch {done} ({BRAIN_CHECKPOINTS}/{found.path.name})"
        if not path.is_file():
            return "none"
        return f"epoch {read_checkpoint(path, trusted=trusted)['epoch']} ({path.name})"
    except UnsafeCheckpointError as exc:
        return str(exc)  # "checkpoint ... is refused: ...; ... --trust ..."
    except (UserError, KeyError, OSError) as exc:
        return f"unreadable: {exc}"


def xp_weights(folder: Path, source: str, best_metric: Any, *, trusted: bool = False, sig: str | None = None) -> dict[str, Any]:
    """An XP's `source` weights ('best', 'ema' or 'last'), as `baton.checkpoint.exported_weights`
    gives them: the state dict of its one model, or {module name: state dict} for several.

    Args:
        best_metric: the XP's `best_metric` config section (name, direction), which picks a
            Brain XP's best checkpoint.
    Raises:
        CheckpointError: no checkpoint, or none holding that source.
    """
    save = brain_save_folder(folder)
    if save is None:
        return exported_weights(folder, source, trusted=trusted, sig=sig)
    if source == "ema":
        raise CheckpointError(f"XP {folder.name} is a Brain XP: its checkpoints hold no EMA weights; use best or last")
    if source not in ("best", "last"):
        raise CheckpointError(f"unknown export source '{source}'; use best, ema or last")
    name, direction = str(best_metric.name), str(best_metric.direction)
    if source == "best":
        key = {"min_key": name} if direction == "min" else {"max_key": name}
        found = find_brain_checkpoint(save, **key)
        if found is None:
            raise CheckpointError(
                f"no checkpoint in {save} records '{name}' (best_metric.name) in its "
                "meta; save it in save_and_keep_only(meta=...), or use --source last"
            )
    else:
        found = find_brain_checkpoint(save)
        if found is None:
            raise CheckpointError(f"no checkpoint in {save}; train the XP first")
    modules = load_file(found.paramfiles["brain"], trusted=trusted)["engine"]["modules"]
    weights = {m: load_file(found.paramfiles[m], trusted=trusted) for m in modules if m in found.paramfiles}
    if not weights:
        raise CheckpointError(f"{found.path} holds none of the Brain's modules ({', '.join(modules)}) as recoverables")
    return next(iter(weights.values())) if len(weights) == 1 else weights


def folder_weights(
    folder: Path, which: str, best_metric: Any, *, sig: str | None = None, trusted: bool = False,
    where: str | None = None, no_checkpoint: Callable[[], Exception] | None = None,
) -> dict[str, Any]:
    """An XP folder's `which` weights ('best', 'ema', 'last'), whichever layout it has: the one
    reading of a trained XP that `//sig/` references and `baton.load_model` share.

    A solver's XP gives {registered name: state dict}; a Brain's XP what `xp_weights` gives.

    Raises:
        CheckpointError: no checkpoint (or `no_checkpoint()`), or none holding that source.
    """
    from baton.checkpoint import CheckpointManager, checkpoint_weights

    if brain_save_folder(folder) is not None:
        return xp_weights(folder, which, best_metric, trusted=trusted, sig=sig)
    data = CheckpointManager(folder, sig, trusted=trusted).load()
    if data is None:
        raise no_checkpoint() if no_checkpoint is not None else CheckpointError(f"no checkpoint in {folder}; train the XP first")
    return checkpoint_weights(data, which, where=where or f"the checkpoint in {folder}")
