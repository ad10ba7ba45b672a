"""`baton grid lm/debug` from scratch: codec, classifier, then the label-conditioned LM scored
by the classifier. Slow (minutes); the numbers it prints are those reported in docs/pipeline.md."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf


def chance_of_at_least(hits: int, trials: int, p: float) -> float:
    """P(X >= hits) for X ~ Binomial(trials, p): how likely guessing does this well."""
    return sum(math.comb(trials, k) * p**k * (1 - p) ** (trials - k) for k in range(hits, trials + 1))


def last(folder: Path) -> dict:
    lines = (folder / "history.jsonl").read_text().splitlines()
    return json.loads(lines[-1])


@pytest.mark.slow
@pytest.mark.starts_first
@pytest.mark.timeout(1500)
def test_lm_debug_grid_runs_the_chain(env: Path) -> None:
    # The grid trains with torch's own thread count, as docs/pipeline.md's numbers were measured,
    # not the one thread a pytest-xdist worker hands its subprocesses (twice the wall time).
    threads = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "baton", "grid", "lm/debug"], capture_output=True, text=True,
                          timeout=1500, env=threads)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    by_solver, folders = {}, {}
    for folder in (env / "xps" / "xps").iterdir():
        solver = next(a for a in json.loads((folder / ".argv.json").read_text()) if a.startswith("solver="))
        by_solver[solver.split("=")[1]], folders[solver.split("=")[1]] = last(folder), folder
    lm_folder = folders["lm/debug"]
    codec, classifier, lm = by_solver["compression/debug"], by_solver["classification/debug"], by_solver["lm/debug"]
    scores = lm["evaluate"]
    print(f"lm/debug grid: {elapsed:.0f} s; codec valid mel {codec['valid']['mel']:.3f}; classifier test accuracy "
          f"{classifier['test']['accuracy']:.3f}; LM valid ce {lm['valid']['ce']:.3f}; {json.dumps(scores)}")
    # Chance is 1/8; the ceiling is acc_codec, the classifier on real clips through the codec.
    samples = int(OmegaConf.load(lm_folder / "config.yaml").evaluate.num_samples)
    hits = round(scores["acc_cfg1"] * samples)
    assert chance_of_at_least(hits, samples, 1 / 8) < 0.01, "classified as their label clearly above chance"
    assert scores["acc_cfg3"] >= 2 / 8, "with guidance, at least twice chance"
    assert scores["acc_cfg3"] > scores["acc_cfg1"], "classifier-free guidance raises it"
    assert scores["acc_codec"] >= scores["acc_cfg3"]
    assert len(by_solver) == 3
    # Run again: every XP is done, nothing trains.
    again = subprocess.run([sys.executable, "-m", "baton", "grid", "lm/debug"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("done") >= 3, again.stdout[-2000:]
