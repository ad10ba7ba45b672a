"""`check_resume`: prove that an XP's task resumes exactly, by running it three ways.

An exact resume holds only if everything that shapes training is in the checkpoint and every
draw of data randomness is a function of (seed, epoch, index). A user's task can break either
silently. The check runs the XP's config, in scratch folders under `<xp_root>/check-resume/`
(never the XP's own folder), as separate processes:

1. uninterrupted, for N updates (the whole run, or `updates`);
2. stopped at update K by a real SIGTERM (the path a preemption takes: checkpoint, exit), then
   resumed to N;
3. with a checkpoint every K//2 updates, killed by SIGKILL at update K, then resumed to N
   (the updates after the last checkpoint are redone).

Every run records each update (`resume_record`); the resumed runs are compared with the first
(`resume_compare`), and the training data is probed (`resume_probe`) for the diagnosis. Any
front end works: the loop, the one each of them trains through, is what is watched. With
`nproc` > 1 each run is that many ranks under torchrun, and each rank is compared with its twin.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baton.errors import UserError
from baton.xp.resume_compare import Verdict, compare_final, compare_updates, data_diagnosis
from baton.xp.resume_record import read_records
from baton.xp.resume_worker import rank_file

STOPS = ("term", "kill")


class RunFailed(UserError):
    """A training run of the check failed; its scratch folder is kept, for its log."""


@dataclass
class ResumeCheck:
    """The outcome of `check_resume`.

    Attributes:
        sig: the XP checked; updates: N, the updates each run trained; at: the stop points.
        verdicts: one per stopped-and-resumed run; data: the probes' diagnosis of the training
            data when it is not a function of (seed, epoch, index), else None.
        seconds: how long the check took; scratch: the kept scratch folder (`keep=True`), else None.
    """

    sig: str
    updates: int
    at: list[int]
    verdicts: list[Verdict] = field(default_factory=list)
    data: tuple[str, str] | None = None
    seconds: float = 0.0
    scratch: Path | None = None

    @property
    def exact(self) -> bool:
        return self.data is None and all(v.exact for v in self.verdicts)


class _Runner:
    """Starts the check's training processes in one scratch folder and reads what they left."""

    def __init__(self, overrides: Sequence[str], config_dir: Sequence[str], scratch: Path,
                 say: Callable[[str], None], sig: str, nproc: int = 1) -> None:
        self.overrides, self.config_dir, self.scratch, self.say = list(overrides), list(config_dir), scratch, say
        self.sig, self.nproc = sig, nproc

    def command(self, spec: dict[str, Any]) -> list[str]:
        """One process, or `nproc` ranks started by torchrun (gloo on CPU), as `baton run -d`."""
        worker = ["-m", "baton.xp.resume_worker", json.dumps(spec)]
        if self.nproc == 1:
            return [sys.executable, *worker]
        from baton.xp.local_distributed import free_port

        return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(self.nproc),
                "--max-restarts", "0", "--master-addr", "127.0.0.1", "--master-port", str(free_port(self.sig)),
                "--module", *worker[1:]]

    def ranks(self) -> list[int]:
        return list(range(self.nproc))

    def run(self, name: str, *, stop_at: int | None = None, kill_at: int | None = None,
            extra: Sequence[str] = (), probe: bool = False) -> dict[str, Any] | None:
        """One process of run `name` (a folder of the scratch); its result, None after a SIGKILL."""
        leg = self.scratch / name
        leg.mkdir(parents=True, exist_ok=True)
        spec = {
            "overrides": [*self.overrides, *extra], "config_dir": self.config_dir, "folder": str(leg / "xp"),
            "records": str(leg / "updates.jsonl"), "result": str(leg / "result.json"),
            "stop_at": stop_at, "kill_at": kill_at, "probe": probe,
        }
        results = [leg / "result.json"] if self.nproc == 1 else [rank_file(leg / "result.json", r) for r in self.ranks()]
        for path in results:
            path.unlink(missing_ok=True)
        with open(leg / "log.txt", "a", encoding="utf-8") as log:
            code = subprocess.run(
                self.command(spec), stdout=log, stderr=subprocess.STDOUT, check=False,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            ).returncode
        if kill_at is not None and code != 0 and kill_at in self.records(name):
            return None  # killed (one process: -9; under torchrun, the launcher's failure code)
        if code != 0 or not all(path.exists() for path in results):
            lines = (leg / "log.txt").read_text(encoding="utf-8", errors="replace").strip().splitlines()
            last = lines[-1] if lines else f"exit code {code}"
            raise RunFailed(f"check-resume: the {name} run failed ({last}); its log is {leg / 'log.txt'}")
        result: dict[str, Any] = {"ranks": [json.loads(path.read_text(encoding="utf-8")) for path in results]}
        result.update(result["ranks"][0])
        return result

    def records(self, name: str, rank: int = 0) -> dict[int, dict[str, Any]]:
        path = self.scratch / name / "updates.jsonl"
        return read_records(path if self.nproc == 1 else rank_file(path, rank))


def parse_at(text: str | None) -> list[int] | None:
    """`--at 6,12` -> [6, 12].

    Raises:
        UserError: not a list of positive whole numbers.
    """
    if text is None:
        return None
    try:
        points = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        points = []
    if not points or min(points) < 1:
        raise UserError(f"--at {text}: give the updates to stop at as positive whole numbers, e.g. --at 6,12")
    return points


def check_resume(
    overrides: Sequence[str], *, updates: int | None = None, at: Sequence[int] | None = None,
    stops: Sequence[str] = STOPS, keep: bool = False, config_dir: Sequence[str] = (), nproc: int = 1,
    say: Callable[[str], None] = lambda line: None,
) -> ResumeCheck:
    """Run the XP of `overrides` uninterrupted and stopped-and-resumed, and compare.

    Args:
        updates: N, the updates of each run (None: the whole run, `optim.epochs`).
        at: the updates to stop at (None: N // 2); stops: "term" (SIGTERM) and/or "kill"
            (SIGKILL after a mid-epoch checkpoint). keep: leave the scratch folder.
        nproc: ranks per run (torchrun, gloo on CPU); each rank's updates are compared with the
            same rank's. Under several ranks a stop is agreed every 10 updates and at each epoch's
            end (`baton.solver.cadence`), so a run told to stop at K stops at the first of those.
        say: called with a line as each run starts (progress).

    Raises:
        UserError: a bad config (the line `baton run` gives), a stop point outside 1..N-1.
        RunFailed: a run failed: its last log line, and its log, kept in the scratch folder.
    """
    from baton.config import compose_xp
    from baton.xp.launch import preflight

    started = time.monotonic()
    unknown = [s for s in stops if s not in STOPS]
    if unknown or not stops:
        raise UserError(f"--stops {','.join(stops)}: choose among {', '.join(STOPS)}, e.g. --stops term,kill")
    if updates is not None and updates < 2:
        raise UserError(f"--updates {updates}: the check needs at least 2 updates, to stop between them")
    if nproc < 1:
        raise UserError(f"--nproc {nproc}: give 1 or more processes")
    xp = compose_xp(list(overrides), list(config_dir))
    preflight(xp)
    scratch = Path(str(xp.cfg.xp.root)) / "check-resume" / f"{xp.sig}-{os.getpid()}"
    if scratch.exists():
        shutil.rmtree(scratch)
    if not xp.cfg.checkpoint.save:
        raise UserError("check-resume: checkpoint.save=false in this XP's config: nothing would be saved to resume "
                        "from; check it with checkpoint.save=true")
    runner = _Runner(overrides, config_dir, scratch, say, xp.sig, nproc)
    try:
        say(f"uninterrupted run in {scratch}")
        reference = runner.run("uninterrupted", stop_at=updates, probe=True)
        assert reference is not None
        total = reference["snapshot"]["update"]
        if total < 2:
            raise UserError(f"XP {xp.sig} trains {total} update(s) in all: the check needs 2 or more (raise optim.epochs)")
        points = list(at) if at is not None else [total // 2]
        outside = [k for k in points if not 1 <= k < total]
        if outside:
            raise UserError(f"--at {','.join(map(str, outside))}: the runs train {total} updates; stop at 1..{total - 1}")
        check = ResumeCheck(xp.sig, total, points)
        probe = reference["probe"]
        for point in points:
            for stop in stops:
                check.verdicts.append(_stopped_run(runner, stop, point, updates, reference, probe))
        if probe and (probe.get("global_rng") or probe.get("set_epoch")):  # the data fails, whatever the runs say
            check.data = data_diagnosis(next((v.first_update for v in check.verdicts if v.first_update), None), probe)
    except BaseException as exc:
        if not keep and not isinstance(exc, RunFailed):
            _remove(scratch)
        raise
    check.seconds = time.monotonic() - started
    if keep:
        check.scratch = scratch
    else:
        _remove(scratch)
    return check


def _remove(scratch: Path) -> None:
    """The scratch folder, and `check-resume/` above it once no other check uses it."""
    shutil.rmtree(scratch, ignore_errors=True)
    with contextlib.suppress(OSError):
        scratch.parent.rmdir()


def _stopped_run(runner: _Runner, stop: str, point: int, updates: int | None,
                 reference: dict[str, Any], probe: Any) -> Verdict:
    """Stop a run at `point` (SIGTERM, or SIGKILL after a checkpoint), resume it, compare."""
    extra: list[str] = []
    if stop == "term":
        name, title = f"sigterm-{point}", f"SIGTERM at update {point}"
        runner.say(f"stopped at update {point} by SIGTERM, then resumed")
        runner.run(name, stop_at=point, extra=extra)
    else:
        every = max(1, point // 2)
        name, title = f"sigkill-{point}", f"SIGKILL at update {point}"
        extra = [f"checkpoint.every_updates={every}"]
        runner.say(f"killed at update {point} (SIGKILL, checkpoints every {every} updates), then resumed")
        runner.run(name, kill_at=point, extra=extra)
    stopped = runner.records(name)
    resumed = runner.run(name, stop_at=updates, extra=extra)
    assert resumed is not None
    if stopped and max(stopped) >= reference["snapshot"]["update"]:
        raise UserError(f"check-resume: the run told to stop at update {point} stopped at {max(stopped)}, the end of "
                        "the run (under several ranks a stop is agreed every 10 updates and at each epoch's end): choose an earlier --at")
    if stop == "term" and stopped and max(stopped) != point:  # several ranks agreed on a later update
        title = f"SIGTERM at update {point} (stopped at {max(stopped)})"
    verdicts = []
    for rank in runner.ranks():
        verdict = compare_updates(title, runner.records("uninterrupted", rank), runner.records(name, rank), probe)
        compare_final(verdict, reference["ranks"][rank]["snapshot"], resumed["ranks"][rank]["snapshot"])
        if runner.nproc > 1 and verdict.diagnosis is not None:
            verdict.diagnosis = f"rank {rank}: {verdict.diagnosis}"
        verdicts.append(verdict)
    # The rank that differs first (any rank, when all are exact).
    return min(verdicts, key=lambda v: (v.exact, v.first_update or 10**9))
