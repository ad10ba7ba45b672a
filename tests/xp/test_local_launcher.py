"""The local launcher's queue: an XP that refers to others waits for them, whatever `-j` is,
and is never started when one of them failed. Real child processes, each a short Python
program standing in for `baton run -f SIG` (it records when it ran and exits with a code)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from baton.xp.local_launcher import LocalLauncher


class ScriptLauncher(LocalLauncher):
    """Runs `python -c PROGRAM` for each sig instead of `baton run -f SIG`; the program sleeps
    a little, appends (sig, start, end) to a journal and exits with the code given for it."""

    def __init__(self, journal: Path, codes: dict[str, int], jobs: int) -> None:
        super().__init__(jobs)
        self.journal, self.codes = journal, codes

    def command(self, sig: str) -> list[str]:
        program = (
            "import json, sys, time; start = time.time(); time.sleep(0.3); "
            f"open({str(self.journal)!r}, 'a').write(json.dumps([{sig!r}, start, time.time()]) + '\\n'); "
            f"sys.exit({self.codes.get(sig, 0)})"
        )
        return [sys.executable, "-c", program]


def run_all(launcher: LocalLauncher) -> None:
    deadline = time.monotonic() + 60
    while launcher.poll():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_an_xp_starts_after_the_xps_it_refers_to_even_with_room_to_run_more(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    launcher = ScriptLauncher(journal, {}, jobs=4)
    for sig, after in [("lm", {"codec", "classifier"}), ("codec", set()), ("classifier", set()), ("other", set())]:
        (tmp_path / sig).mkdir()
        launcher.submit(sig, tmp_path / sig, after=after)
    run_all(launcher)
    runs = {sig: (start, end) for sig, start, end in map(json.loads, journal.read_text().splitlines())}
    assert set(runs) == {"lm", "codec", "classifier", "other"}
    assert runs["lm"][0] >= max(runs["codec"][1], runs["classifier"][1])
    assert runs["other"][0] < runs["codec"][1], "an XP that waits for nothing starts at once"
    assert launcher.skipped == {} and set(launcher.returncodes.values()) == {0}


def test_an_xp_whose_reference_failed_is_never_started_nor_the_xps_after_it(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    launcher = ScriptLauncher(journal, {"codec": 1}, jobs=2)
    for sig, after in [("codec", set()), ("lm", {"codec"}), ("scorer", {"lm"}), ("other", set())]:
        (tmp_path / sig).mkdir()
        launcher.submit(sig, tmp_path / sig, after=after)
    run_all(launcher)
    ran = [json.loads(line)[0] for line in journal.read_text().splitlines()]
    assert sorted(ran) == ["codec", "other"]
    assert launcher.skipped == {"lm": "codec", "scorer": "lm"}
