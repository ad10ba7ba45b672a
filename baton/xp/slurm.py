"""SLURM through submitit: `baton run --slurm` submits an XP as a job; the job runs `baton run`
with the same arguments, so it finds, locks and resumes the same XP folder.

Resources come from the `slurm` config section (conf/solver/default.yaml), overridden by the
cluster's `slurm:` entry of the team file, overridden by `slurm.*` on the command line. The
partition defaults to the cluster's team partition, else its global one, else SLURM's default.

Preemption and time limits: SLURM sends SIGUSR1 (`slurm.signal_delay_s` before the limit, or
on `scancel --signal=USR1`); the engine's handler only sets a flag, the loop checkpoints at the
next update and stops with exit code 138, and the job then asks SLURM to requeue it
(`scontrol requeue`), up to `slurm.max_requeues` times. The requeued job resumes exactly.
SIGTERM (`scancel`, or a preemption that SLURM requeues itself) also checkpoints and stops, but
the job does not requeue itself: a cancelled job stays cancelled. A job that fails (an
exception, a config error) is not requeued.

In the XP folder: `submitit/` (the job's pickles and logs, `<job id>_<task>_log.out/err`) and
`.slurm.json` (the job id, when it was submitted, where its logs are), which `baton info`, `ls`,
the grid table and `--clear` read. A grid's job array keeps its files in
`<xp root>/grids/<grid>/submitit/`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baton.errors import ConfigError, UserError

JOB_FILE = ".slurm.json"
SUBMITIT = "submitit"
LIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "CONFIGURING", "COMPLETING", "REQUEUE_HOLD", "REQUEUE_FED"}
REQUEUE_CODE = 128 + 10  # stopped by SIGUSR1 (time limit, preemption), checkpointed: requeue


@dataclass(frozen=True)
class SlurmSettings:
    partition: str | None = None
    gpus: int = 0               # per node; one task per GPU (one task without GPUs)
    nodes: int = 1
    cpus_per_task: int = 2
    mem_per_gpu: str | None = None
    time: int = 60              # minutes
    constraint: str | None = None
    exclude: str | None = None
    account: str | None = None
    qos: str | None = None
    setup: list[str] = field(default_factory=list)
    max_requeues: int = 3
    signal_delay_s: int = 90

    @classmethod
    def resolve(cls, section: Mapping[str, Any], cluster: Mapping[str, Any], given: Mapping[str, Any], partitions: Mapping[str, Any]) -> SlurmSettings:
        """`section` (the config's defaults) < `cluster` (the team file) < `given` (the command line).

        Raises:
            ConfigError: an unknown key, naming it.
        """
        merged = {**dict(section), **dict(cluster), **dict(given)}
        unknown = sorted(set(merged) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown SLURM setting '{unknown[0]}'; use {', '.join(cls.__dataclass_fields__)}")
        if merged.get("partition") is None:
            merged["partition"] = (partitions or {}).get("team") or (partitions or {}).get("global")
        merged["setup"] = list(merged.get("setup") or [])
        return cls(**merged)


def settings_for(cfg: Any, overrides: Sequence[str]) -> SlurmSettings:
    """The job's settings for a composed XP config and the overrides it was composed from."""
    from omegaconf import OmegaConf

    section = OmegaConf.to_container(cfg.slurm, resolve=True)
    env = OmegaConf.to_container(cfg.env, resolve=True) if "env" in cfg else {}
    given = {}
    for override in overrides:
        key, _, value = override.partition("=")
        if key.startswith("slurm."):
            given[key[len("slurm."):]] = OmegaConf.select(cfg, key)
    assert isinstance(section, dict) and isinstance(env, dict)
    return SlurmSettings.resolve({str(k): v for k, v in section.items()}, env.get("slurm") or {}, given, env.get("partitions") or {})


class XPJob:
    """What the job runs: `baton run ARGS` in the job's process, then a requeue when it stopped
    on a signal (preemption, time limit) with requeues left."""

    def __init__(self, argv: Sequence[str], max_requeues: int) -> None:
        self.argv = list(argv)
        self.max_requeues = max_requeues

    def __call__(self) -> int:
        import submitit

        env = submitit.JobEnvironment()
        if env.num_tasks > 1:  # one task per GPU: torch.distributed's variables from SLURM's
            submitit.helpers.TorchDistributedEnvironment().export()
        from baton.import_paths import working_directory_last
        from baton.xp.cli import run_command

        working_directory_last(sys.path)  # as the `baton` command does
        try:
            code = run_command(["run", *self.argv])
        except SystemExit as stop:  # the engine's Interrupted: 128 + signal
            code = int(stop.code or 0)
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        if code == REQUEUE_CODE and env.global_rank == 0:
            if restarts < self.max_requeues:
                print(f"baton: stopped on a signal (exit {code}); requeuing job {env.job_id} "
                      f"({restarts + 1} of {self.max_requeues})", flush=True)
                subprocess.run(["scontrol", "requeue", str(env.job_id)], check=True, timeout=60)
            else:
                print(f"baton: stopped on a signal; not requeued: slurm.max_requeues={self.max_requeues} reached", flush=True)
        if code != 0:
            raise SystemExit(code)  # the job's state says it did not finish
        return code


def require_slurm() -> None:
    """Raises UserError when this machine cannot submit to SLURM (no sbatch, or no submitit)."""
    if shutil.which("sbatch") is None:
        raise UserError("--slurm: sbatch is not on PATH (no SLURM here); run without --slurm, or try scripts/local_slurm.sh")
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise UserError("--slurm needs submitit: pip install 'baton[slurm]'") from None


def submit(sig: str, folder: Path, argv: Sequence[str], settings: SlurmSettings, after: Sequence[str] = ()) -> str:
    """Submit the XP's job; returns its id, also written to `<xp>/.slurm.json`.

    `after`: job ids that must end well first (`--dependency=afterok`); if one fails, SLURM
    cancels this job rather than leaving it pending for ever (`--kill-on-invalid-dep`)."""
    import submitit

    require_slurm()
    executor = submitit.AutoExecutor(folder=folder / SUBMITIT, cluster="slurm")
    parameters = _parameters(f"baton-{sig}", settings)
    if after:
        parameters["slurm_additional_parameters"] = {"dependency": "afterok:" + ":".join(after), "kill_on_invalid_dep": "yes"}
    executor.update_parameters(**parameters)
    job = executor.submit(XPJob(argv, settings.max_requeues))
    _record(folder, str(job.job_id), settings, logs=folder / SUBMITIT)
    return str(job.job_id)


ARRAY_MIN = 4  # XPs with the same resources go as one job array from this many on


@dataclass(frozen=True)
class Submission:
    sig: str
    folder: Path
    argv: list[str]
    settings: SlurmSettings
    after: tuple[str, ...] = ()  # sigs of XPs whose jobs must end well first (see submit_many)


def submit_many(submissions: Sequence[Submission], grid: str, live_jobs: Mapping[str, str] | None = None) -> list[str]:
    """Submit a grid's XPs: those with the same resources as one job array when there are at
    least ARRAY_MIN of them (one scheduler entry, `<array>_<index>` ids), the others one by one.
    An XP with `after` goes alone, once the XPs it names have a job: submitted here, or live
    ones in `live_jobs` (sig -> job id). Returns the job ids in the order given."""
    import submitit

    require_slurm()
    known = dict(live_jobs or {})
    groups: dict[str, list[int]] = {}  # by resources (as text: the settings hold a list)
    chained = [index for index, submission in enumerate(submissions) if submission.after]
    for index, submission in enumerate(submissions):
        if not submission.after:
            groups.setdefault(repr(submission.settings), []).append(index)
    ids: dict[int, str] = {}
    for members in groups.values():
        settings = submissions[members[0]].settings
        if len(members) < ARRAY_MIN:
            for index in members:
                s = submissions[index]
                ids[index] = submit(s.sig, s.folder, s.argv, s.settings)
            continue
        # An array's jobs share one submitit folder, the grid's (<xp root>/grids/<name>/submitit);
        # each XP folder records its own job id and where its logs are.
        first = submissions[members[0]]
        executor = submitit.AutoExecutor(folder=first.folder.parent.parent / "grids" / grid / SUBMITIT, cluster="slurm")
        executor.update_parameters(**_parameters(f"baton-grid-{grid}", settings))
        with executor.batch():
            jobs = [executor.submit(XPJob(submissions[i].argv, settings.max_requeues)) for i in members]
        for index, job in zip(members, jobs, strict=True):
            ids[index] = str(job.job_id)
            _record(submissions[index].folder, str(job.job_id), settings, logs=Path(executor.folder))
    known.update({submissions[i].sig: job_id for i, job_id in ids.items()})
    for index in chained:  # in the order given: a grid declares an XP after those it names
        s = submissions[index]
        missing = [sig for sig in s.after if sig not in known]
        if missing:
            raise UserError(f"XP {s.sig} refers to XP {missing[0]}, which has no job; submit that one first")
        ids[index] = known[s.sig] = submit(s.sig, s.folder, s.argv, s.settings, after=[known[sig] for sig in s.after])
    return [ids[i] for i in range(len(submissions))]


def _parameters(name: str, settings: SlurmSettings) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "name": name, "timeout_min": settings.time, "nodes": settings.nodes,
        "tasks_per_node": max(1, settings.gpus), "cpus_per_task": settings.cpus_per_task,
        "slurm_signal_delay_s": settings.signal_delay_s, "slurm_setup": settings.setup,
    }
    optional = {
        "slurm_partition": settings.partition, "gpus_per_node": settings.gpus or None,
        "slurm_mem_per_gpu": settings.mem_per_gpu, "slurm_constraint": settings.constraint,
        "slurm_exclude": settings.exclude, "slurm_account": settings.account, "slurm_qos": settings.qos,
    }
    parameters.update({k: v for k, v in optional.items() if v is not None})
    return parameters


def _record(folder: Path, job_id: str, settings: SlurmSettings, logs: Path) -> None:
    from baton.atomic import write_text_atomic

    record = {"job_id": job_id, "submitted": time.time(), "partition": settings.partition, "logs": str(logs)}
    write_text_atomic(folder / JOB_FILE, json.dumps(record) + "\n")


def job_record(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / JOB_FILE
    try:
        record: dict[str, Any] = json.loads(path.read_text())
        return record
    except (OSError, ValueError):
        return None


def job_state(folder: Path) -> str | None:
    """The SLURM state of the XP's last job (PENDING, RUNNING, COMPLETED, ...), None without one
    or without SLURM to ask."""
    return job_states([folder])[Path(folder)]


def job_states(folders: Sequence[Path]) -> dict[Path, str | None]:
    """`job_state` of each folder, asking SLURM once (one `squeue`, one `sacct` for the jobs
    that left the queue), not once per XP: tables of many XPs are redrawn every second."""
    jobs = {Path(f): r["job_id"] for f in folders if (r := job_record(f)) is not None}
    states: dict[Path, str | None] = {Path(f): None for f in folders}
    if not jobs or shutil.which("squeue") is None:
        return states
    # -r: one line per array task, so ids read `<array>_<index>` as recorded.
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T"], capture_output=True, text=True, timeout=30)
    queued = dict(line.split(None, 1) for line in out.stdout.splitlines() if " " in line) if out.returncode == 0 else {}
    left = sorted({job for job in jobs.values() if job not in queued})
    ended: dict[str, str] = {}
    if left and shutil.which("sacct") is not None:
        out = subprocess.run(["sacct", "-n", "-X", "-j", ",".join(left), "-o", "JobID,State"], capture_output=True, text=True, timeout=30)
        if out.returncode == 0:
            ended = {parts[0]: parts[1] for line in out.stdout.splitlines() if len(parts := line.split()) >= 2}
    for folder, job in jobs.items():
        # Not in the queue, and no accounting to say how it ended: ENDED.
        states[folder] = queued.get(job, "").strip() or ended.get(job) or "ENDED"
    return states


def cancel(folder: Path) -> str | None:
    """Cancel the XP's job if it is still queued or running; returns its id when cancelled."""
    state = job_state(folder)
    record = job_record(folder)
    if record is None or state not in LIVE_STATES:
        return None
    subprocess.run(["scancel", record["job_id"]], check=True, timeout=60)
    deadline = time.monotonic() + 60  # the job's process must be gone before its folder is cleared
    while job_state(folder) in LIVE_STATES and time.monotonic() < deadline:
        time.sleep(0.5)
    return str(record["job_id"])


def job_logs(folder: Path, task: int = 0) -> list[Path]:
    """The job's stdout and stderr files for `task` (the rank), newest job first."""
    record = job_record(folder)
    if record is None:
        return []
    base = Path(record.get("logs") or Path(folder) / SUBMITIT)
    return [p for p in (base / f"{record['job_id']}_{task}_log.out", base / f"{record['job_id']}_{task}_log.err") if p.exists()]

