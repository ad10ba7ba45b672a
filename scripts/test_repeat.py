#!/usr/bin/env python3
"""Run the tests that depend on timing (stop signals, kills, several ranks, SLURM, a tracker's
background service) N times in a row and say how many runs each passed.

A test that fails once in twenty is a defect with a cause; a single green run does not show it
is gone. `make test-repeat` (N=20 by default; `make test-repeat N=5`), or directly:

    scripts/test_repeat.py 20                      # the default set below
    scripts/test_repeat.py 5 tests/xp/test_lock.py # any pytest selection

Exit 0 only when every test passed every run. The SLURM tests join the default set when a
cluster answers (`scripts/local_slurm.sh start`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT = [
    # stop signals and kills, one process and several ranks
    "tests/xp/test_run_signal.py",
    "tests/xp/test_run_sigint.py",
    "tests/xp/test_grid_signal.py",
    "tests/solver/test_resume.py",
    "tests/solver/test_distributed.py",
    "tests/speechbrain/test_brain_distributed.py",
    # several ranks
    "tests/solver/test_ddp_parity.py",
    "tests/xp/test_run_ranks.py",
    "tests/xp/test_run_distrib.py",
    "tests/optim/test_stepper_ddp.py",
    "tests/models/test_quantization_distributed.py",
    # a tracker's background service (W&B's offline writer)
    "tests/loggers/test_trackers.py::test_a_wandb_run_killed_and_resumed_continues_under_the_same_id",
]


def slurm_answers() -> bool:
    if shutil.which("sinfo") is None:
        return False
    return subprocess.run(["sinfo"], capture_output=True, timeout=30).returncode == 0


def outcomes(report: Path) -> dict[str, str | None]:
    """test id -> None if it passed, else the failure's text, from one pytest run's JUnit XML
    (skipped tests are left out)."""
    results: dict[str, str | None] = {}
    for case in ElementTree.parse(report).iter("testcase"):
        if case.find("skipped") is not None:
            continue
        name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        results[name] = None if problem is None else (problem.text or problem.get("message") or "failed")
    return results


def main(argv: list[str]) -> int:
    if not argv or not argv[0].isdigit():
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: scripts/test_repeat.py N [PYTEST SELECTION ...]", file=sys.stderr)
        return 2
    runs, selection = int(argv[0]), argv[1:]
    cluster = slurm_answers()
    markers = "" if cluster else "not slurm"  # SLURM's tests only where a cluster answers
    if not selection:
        selection = [*DEFAULT, *(["tests/xp/test_slurm.py"] if cluster else [])]
    passed: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="baton-repeat-") as scratch:
        for run in range(1, runs + 1):
            report = Path(scratch) / f"run{run}.xml"
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *selection]
            if markers:
                command += ["-m", markers]
            subprocess.run(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if not report.exists():
                print(f"run {run}: pytest wrote no report (collection failed?); run the selection once by hand")
                return 2
            for name, problem in outcomes(report).items():
                seen[name] += 1
                passed[name] += problem is None
                if problem is not None:  # a flake is only fixed by its cause: keep what it said
                    print(f"run {run}: {name} failed:\n{problem[-3000:]}", flush=True)
            failed = [name for name in seen if passed[name] < seen[name]]
            print(f"run {run}/{runs}: {len(seen)} tests, {len(failed)} failed at least once "
                  f"({time.monotonic() - started:.0f} s)", flush=True)
    width = max(len(name) for name in seen)
    for name in sorted(seen):
        print(f"{name:<{width}}  {passed[name]}/{seen[name]}")
    flaky = sum(passed[name] < seen[name] for name in seen)
    print(f"{len(seen)} tests x {runs} runs: {'all passed every run' if not flaky else f'{flaky} failed at least once'}")
    return 0 if not flaky else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
