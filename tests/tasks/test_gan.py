"""The GAN vocoder task, entirely from YAML (`solver=gan/debug`), on the built-in dataset."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile

from baton.config import compose
from baton.solver.extensible import ExtensibleSolver


def test_gpu_size_config_builds_hifigan_sized_networks(env: Path) -> None:
    cfg = compose(["solver=gan/default", "dataset.num_workers=0", "device=cpu"])
    with ExtensibleSolver(cfg) as solver:
        generator = solver.networks["generator"]
        assert generator.hop_length == 256  # the mel injector's hop_length
        assert sum(p.numel() for p in generator.parameters()) > 5e6
        assert [s.name for s in solver.graph.steps] == ["generator", "discriminator"]
        assert solver.graph.step("discriminator").trains == ["mpd", "msd"]


TINY = ["optim.epochs=1", "optim.updates_per_epoch=3", "dataset.batch_size=4", "dataset.segment_duration=0.064",
        "dataset.valid.num_samples=4", "generate.num_samples=1", "networks.generator.channels=16",
        "networks.generator.resblock_kernels=[3]", "networks.mpd.periods=[2,3]", "networks.mpd.channels=[4,8]",
        "networks.msd.channels=[4,8]", "logging.tensorboard=false", "num_threads=1"]


def test_a_cli_run_exports_and_loads_every_network(env: Path) -> None:
    import torch

    import baton

    proc = subprocess.run([sys.executable, "-m", "baton", "run", "solver=gan/debug", *TINY],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (folder,) = (env / "xps" / "xps").iterdir()
    networks = baton.load_model(folder.name)
    assert set(networks.named) == {"generator", "mpd", "msd"} and not networks["generator"].training
    assert networks["generator"](torch.zeros(1, 40, 5)).shape == (1, 1, 5 * 64)
    exported = env / "nets.pt"
    proc = subprocess.run([sys.executable, "-m", "baton", "export", folder.name, "-o", str(exported)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    weights = torch.load(exported, weights_only=True)
    assert set(weights) == {"generator", "mpd", "msd"}
    for key, value in networks["generator"].state_dict().items():
        assert torch.equal(weights["generator"][key], value), key
    last = env / "last.pt"
    proc = subprocess.run([sys.executable, "-m", "baton", "export", folder.name, "--source", "last", "-o", str(last)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and set(torch.load(last, weights_only=True)) == {"generator", "mpd", "msd"}, proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_debug_config_trains_and_its_valid_mel_distance_falls(env: Path) -> None:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "baton", "run", "solver=gan/debug"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    elapsed = time.monotonic() - start
    (folder,) = (env / "xps" / "xps").iterdir()
    history = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    mel = [epoch["valid"]["mel_distance"] for epoch in history]
    print(f"gan/debug: {elapsed:.0f} s, valid mel distance by epoch: {[round(m, 3) for m in mel]}")
    assert len(history) == 6 and mel[-1] < 0.85 * mel[0]
    fakes = sorted((folder / "samples" / "6").glob("*_fake.wav"))
    assert len(fakes) == 4
    audio, rate = soundfile.read(fakes[0])
    assert rate == 16000 and len(audio) == 8000 and abs(audio).max() > 0.01
