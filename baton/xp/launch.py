"""Turn overrides into a runnable XP, and run one: shared by `baton run` and grids."""

from __future__ import annotations

import logging
import shutil
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from baton.config import Composition, config_dirs, load_env
from baton.config.overrides import dedupe, parse_overrides
from baton.envinfo import describe
from baton.errors import UserError
from baton.xp import status as st
from baton.xp.drift import check_config_drift, write_settings
from baton.xp.folder import ENV_LOG, XPFolder, find_xp
from baton.xp.lock import LOCK, Heartbeat, XPLock

if TYPE_CHECKING:
    from baton.solver.loop import BaseSolver

# What a launcher asks of a solver class: `from_config(cfg)`, a context manager (closed after
# the run), `run()`, and `finished` (done, or stopped early by should_stop). BaseSolver has it.


def xp_root(config_dir: Sequence[str] = (), overrides: Sequence[str] = ()) -> str:
    """The XP root that XPs composed with these overrides live in (an `xp.root=` one wins)."""
    dirs = config_dirs(list(config_dir))
    explicit = None
    for override in parse_overrides(overrides, dirs):
        if override.key == "xp.root" and not override.prefix:
            explicit = None if override.value is None else str(override.value)
    return load_env(dirs, xp_root=explicit).xp_root


def replay_overrides(sig: str, extra: Sequence[str], config_dir: Sequence[str] = ()) -> list[str]:
    """SIG's stored overrides followed by `extra`; the rightmost value of a key wins.

    Raises:
        UserError: no XP with that signature under the XP root.
    """
    source = find_xp(sig, xp_root(config_dir, extra))
    return dedupe([*source.argv(), *extra])


def init_xp(xp: Composition) -> XPFolder:
    """Write what makes a signature runnable with `run -f`: the overrides and the delta."""
    folder = XPFolder(xp.folder)
    folder.write_argv(xp.overrides)
    st.write_delta(folder, xp.delta)
    return folder


def solver_class(cfg: Any) -> type[BaseSolver]:
    """The solver class `cfg.solver` names, after importing the modules in `cfg.imports`.

    Raises:
        ConfigError: the name or import path does not resolve.
    """
    from baton.config.project import no_project_note
    from baton.config.search import solver_search_places
    from baton.solver.registry import solver_class_of

    def hint(what: str) -> str:
        if what == "imports":
            return no_project_note()
        return f"; {solver_search_places(list(cfg.get('imports') or []))}"

    cls: type[BaseSolver] = solver_class_of(cfg, hint=hint)
    return cls


def clear_folder(folder: Path) -> None:
    """Delete an XP's files but keep its lock file, which the caller holds, and the logs of
    `run -d`'s workers, which are being written."""
    from baton.xp.local_distributed import LOGS

    for path in folder.iterdir():
        if path.name in (LOCK, LOGS):  # the lock is held; `run -d` is writing its workers' logs
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def preflight(xp: Composition) -> type[BaseSolver]:
    """What a run checks before its XP's folder is made (the solver class, `//sig/` references,
    that the dataset's manifests exist, the solver's own config checks); `baton run --dry_run`
    runs the same. Returns the class.

    Raises:
        ConfigError: one line, the same a real run would give.
    """
    from baton.data.builders import check_manifests
    from baton.solver.references import check_references_exist

    cls = solver_class(xp.cfg)
    check_references_exist(xp.delta, xp.cfg.xp.get("root"))
    if isinstance(xp.cfg.get("dataset"), Mapping):
        check_manifests(xp.cfg.dataset)
    check = getattr(cls, "check_config", None)
    if callable(check):
        check(xp.cfg)
    return cls


def run_xp(
    xp: Composition, *, clear: bool = False, argv: Sequence[str] = (), accept_config_change: bool = False,
    on_start: Callable[[], None] | None = None,
) -> str:
    """Run the solver of a composed XP in this process, holding the XP's lock.

    Returns the status it ended in: done, or killed when it stopped before `optim.epochs`.
    An XP that ran under other settings (an edited default) is refused unless
    `accept_config_change` (see `baton.xp.drift`). A finished XP returns done at once, without
    building its data and model. `on_start` is called (rank 0) when training is about to start.

    Raises:
        XPBusyError: another process is running this XP; nothing is touched.
        ConfigError: the solver cannot be found; nothing is written.
    """
    from baton import distrib
    from baton.solver.runtime import Interrupted

    cls = preflight(xp)
    distrib.init()
    in_step = False
    try:
        status = _run_rank(cls, xp, clear, argv, accept_config_change, on_start)
        in_step = True
        return status
    except Interrupted as stop:
        in_step = True  # the ranks agreed to stop at the same update
        # The traceback holds the finished frames that held the solver (and its DDP wrappers):
        # clear them, so the solver is gone before the process group is destroyed.
        traceback.clear_frames(stop.__traceback__)
        raise
    finally:
        distrib.shutdown(in_step=in_step)


def _run_rank(
    cls: type[BaseSolver], xp: Composition, clear: bool, argv: Sequence[str], accept_config_change: bool,
    on_start: Callable[[], None] | None,
) -> str:
    from baton import distrib

    if not distrib.is_rank_zero():
        # Rank 0 owns the folder's files; the others wait until it holds the lock and has
        # cleared/initialised the folder (or was refused, or found the XP done), then build
        # alongside it (a build may hold collectives) and train.
        word = distrib.broadcast_object(None)
        if word == _ALREADY_DONE:
            return st.DONE
        if word is not None:
            raise UserError(word)
        with _build_everywhere(cls, xp, None) as solver:
            solver.run()
        return st.DONE
    folder = XPFolder(xp.folder)
    released = False
    try:
        with XPLock(folder.path), Heartbeat(folder.path):
            if clear:
                clear_folder(folder.path)
            accepted = check_config_drift(folder, xp, accept=accept_config_change)
            if not accepted and _is_done(folder, xp):  # nothing to train: no data or model built
                released = True
                distrib.broadcast_object(_ALREADY_DONE)
                return st.DONE
            init_xp(xp)
            released = True
            distrib.broadcast_object(None)
            with _build_everywhere(cls, xp, folder) as solver:
                # Built: only now does this run's config replace the XP's record of it.
                folder.write_config(xp.cfg)
                write_settings(folder, xp)
                with open(folder.path / ENV_LOG, "a") as handle:
                    handle.write(describe(argv or xp.overrides, xp.config_dirs))
                st.clear_exit(folder)
                st.reserve_exit_space(folder)
                if on_start is not None:
                    on_start()
                return _run_solver(solver, xp, folder)
    except BaseException as exc:
        if not released:  # the other ranks are waiting for rank 0's word: never leave them hanging
            distrib.broadcast_object(f"rank 0 could not start XP {xp.sig}: {exc}")
        if isinstance(exc, OSError) and exc.filename is None:  # a failed write names no file
            raise OSError(exc.errno, exc.strerror, str(folder.path)) from exc
        raise


def _record_end(folder: XPFolder, status: str, message: str) -> None:
    """The exit record of a run that raised: if even that cannot be written, the run's own
    error (what failed first) is still the one the user reads."""
    try:
        st.write_exit(folder, status, message)
    except OSError as exc:
        logging.getLogger("baton").warning("could not record the run's end in %s (%s)", st.EXIT, exc.strerror or exc)


_ALREADY_DONE = "<done>"  # rank 0's word to the other ranks when the XP has nothing left to do


def _is_done(folder: XPFolder, xp: Composition) -> bool:
    """The XP finished (all `optim.epochs`, or stopped early by should_stop) and its checkpoint
    was not replaced since (a user rolling back with `cp checkpoint_3.th checkpoint.th` wants a
    resume, not a report)."""
    from baton.xp_checkpoints import last_checkpoint_time

    record = st.read_exit(folder)
    written = last_checkpoint_time(folder.path)
    if not record or record.get("status") != st.DONE or written is None:
        return False
    if written > float(record.get("time", 0)):
        return False
    early = "should_stop" in str(record.get("message", ""))
    return early or len(folder.history()) >= int(xp.cfg.optim.epochs)


def _build_everywhere(cls: type[BaseSolver], xp: Composition, folder: XPFolder | None) -> BaseSolver:
    """Build the solver on every rank, then agree: if any rank failed, every rank raises its
    first error (one line), so none goes on alone into a collective. Rank 0 passes `folder`."""
    from baton import distrib

    solver: BaseSolver | None = None
    failure: BaseException | None = None
    try:
        solver = _build_solver(cls, xp, folder) if folder is not None else cls.from_config(xp.cfg)
    except BaseException as exc:  # a bug too: the other ranks must not wait for this one
        failure = exc
    said = None if failure is None else (str(failure).strip().splitlines() or [type(failure).__name__])[0]
    errors = [e for e in distrib.all_gather_object(said) if e is not None]
    if failure is not None:
        raise failure
    if errors:
        assert solver is not None
        solver.close()
        raise UserError(f"another rank could not build the solver: {errors[0]}")
    assert solver is not None
    return solver


def _build_solver(cls: type[BaseSolver], xp: Composition, folder: XPFolder) -> BaseSolver:
    """The solver, or the user's one-line error. A config error found while building (e.g.
    `device=cuda` on a CPU machine, for a finished XP: `device` is not in the signature) must
    not change the status of an XP that ran before; a new XP records it as failed."""
    try:
        return cls.from_config(xp.cfg)
    except UserError as exc:
        if st.read_exit(folder) is None:
            st.write_exit(folder, st.FAILED, str(exc))
        raise


def _run_solver(solver: BaseSolver, xp: Composition, folder: XPFolder) -> str:
    from baton.solver.runtime import Interrupted

    try:
        solver.run()
    except UserError as exc:
        _record_end(folder, st.FAILED, str(exc))
        raise
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, the last checkpoint stands
        _record_end(folder, st.KILLED, "interrupted (second Ctrl-C); run again to resume from the last checkpoint")
        raise
    except Interrupted as stop:  # SIGTERM/SIGUSR1/SIGINT: checkpoint written, exit 128 + signal
        _record_end(folder, st.KILLED, f"{stop.describe()}; run again to resume")
        raise
    except BaseException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        _record_end(folder, st.FAILED, f"{type(exc).__name__}: {first}")
        raise
    epochs, target = len(folder.history()), int(xp.cfg.optim.epochs)
    if solver.finished:
        st.write_exit(folder, st.DONE, "stopped early by should_stop()" if epochs < target else "")
        return st.DONE
    st.write_exit(folder, st.KILLED, f"stopped after epoch {epochs} of {target}")
    return st.KILLED
