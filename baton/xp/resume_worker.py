"""One training process of `baton check-resume`: `python -m baton.xp.resume_worker SPEC`.

SPEC is JSON: {"overrides", "config_dir", "folder" (a scratch folder, never the XP's own),
"records" (the JSON-lines file of `resume_record`), "result" (where the final snapshot goes),
"stop_at" / "kill_at" (an update, or null), "probe" (probe the training data afterwards)}.
Started by torchrun (`check-resume -d`), every rank runs it: each writes its own records and
result (`.rank<k>` before the suffix), and only rank 0 kills itself at "kill_at" (a crash of
one rank; the launcher stops the others).

The XP's config is composed as `baton run` composes it, the solver is built with the scratch
folder in place of the XP's, and it runs with an `UpdateRecorder` watching its updates. A run
stopped by the recorder's SIGTERM ends like a preempted one (checkpoint written); one stopped
by its SIGKILL leaves only its records and its last checkpoint.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from baton.import_paths import working_directory_last


def run_leg(spec: dict[str, Any]) -> None:
    from omegaconf import open_dict

    from baton import distrib
    from baton.config import compose_xp
    from baton.solver.runtime import Interrupted
    from baton.xp.launch import solver_class
    from baton.xp.resume_probe import probe_solver_data
    from baton.xp.resume_record import UpdateRecorder, solver_snapshot

    xp = compose_xp(spec["overrides"], spec["config_dir"])
    distrib.init()
    rank = distrib.rank()
    folder = Path(spec["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    with open_dict(xp.cfg):
        xp.cfg.xp.folder = str(folder)  # everything that reads the folder from the config too
    cls = solver_class(xp.cfg)
    records, result_file = Path(spec["records"]), Path(spec["result"])
    if distrib.is_distributed():
        records, result_file = (rank_file(path, rank) for path in (records, result_file))
    kill_at = spec["kill_at"] if rank == 0 else None
    recorder = UpdateRecorder(records, stop_at=spec["stop_at"], kill_at=kill_at)
    try:
        with cls.from_config(xp.cfg, folder) as solver:
            solver.update_observer = recorder
            stopped = False
            try:
                solver.run()
            except Interrupted:
                stopped = True
            solver.update_observer = None
            result = {
                "snapshot": solver_snapshot(solver),
                "stopped": stopped,
                "probe": probe_solver_data(solver) if spec["probe"] else None,
            }
    finally:
        recorder.close()
    result_file.write_text(json.dumps(result), encoding="utf-8")
    distrib.shutdown(in_step=True)  # every rank got here: a finished run, or a stop they agreed on


def rank_file(path: Path, rank: int) -> Path:
    """`updates.jsonl` -> `updates.rank1.jsonl`: one file per rank of a distributed run."""
    return path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def main() -> None:
    working_directory_last(sys.path)  # a project's own solver, as `baton run` finds it
    run_leg(json.loads(sys.argv[1]))


if __name__ == "__main__":
    main()
