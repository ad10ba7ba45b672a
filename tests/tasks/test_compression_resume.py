"""The compression task resumes exactly: `baton run` killed (SIGKILL) mid-epoch and run again
ends with the weights, codebooks and history of an uninterrupted run. This covers what the
example task does not: random crops of AudioDataset, RVQ k-means init and dead-code
replacement drawing from the training RNG, and the evaluate/generate stages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
SHORT = ["solver=compression/debug", "optim.epochs=2", "optim.updates_per_epoch=10",
         "dataset.batch_size=4", "evaluate.n_q=[4]", "generate.every=2", "generate.num_samples=1",
         "checkpoint.every_updates=3", "logging.tensorboard=false", "num_threads=1"]


def baton_run(xp_root: Path, data: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BATON_XP_DIR": str(xp_root), "BATON_DATA_DIR": str(data)}
    return subprocess.Popen([sys.executable, "-m", "baton", "run", *SHORT], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def final(xp_root: Path) -> tuple[dict[str, torch.Tensor], bytes]:
    (folder,) = xp_root.glob("xps/*")
    state = torch.load(folder / "checkpoint.th", weights_only=False)["state"]
    return state["registered"]["model"], (folder / "history.jsonl").read_bytes()


def test_killed_compression_run_resumes_bit_exact(tmp_path: Path, synth_cache: Path) -> None:
    straight = baton_run(tmp_path / "straight", synth_cache)
    assert straight.wait(timeout=300) == 0, straight.communicate()[0][-2000:]

    killed_root = tmp_path / "killed"
    proc = baton_run(killed_root, synth_cache)
    deadline = time.monotonic() + 200
    while not list(killed_root.glob("xps/*/checkpoint.th")):  # first mid-epoch checkpoint
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-2000:]
        time.sleep(0.01)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL  # it died mid-run, not after finishing
    again = baton_run(killed_root, synth_cache)
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 0 and "resuming" in out, out[-2000:]

    (weights, history), (resumed, resumed_history) = final(tmp_path / "straight"), final(killed_root)
    for key, value in weights.items():  # codebooks, cluster sizes and all
        assert torch.equal(value, resumed[key]), key
    assert resumed_history == history
