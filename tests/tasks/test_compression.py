"""The compression task trains for real on the built-in dataset (a shortened `compression/debug`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile

from baton.config import compose
from baton.tasks.compression import CompressionSolver

SHORT = ["solver=compression/debug", "optim.epochs=2", "optim.updates_per_epoch=12",
         "dataset.batch_size=8", "evaluate.n_q=[1,4]", "generate.num_samples=2",
         "logging.tensorboard=false", "num_threads=2"]


@pytest.fixture
def env(synth_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BATON_DATA_DIR", str(synth_cache))
    monkeypatch.setenv("BATON_XP_DIR", str(tmp_path / "xps"))
    return tmp_path


def test_shortened_debug_run_learns_and_writes_samples(env: Path) -> None:
    cfg = compose(SHORT)
    history = CompressionSolver(cfg).run()
    first, last = history[0], history[-1]
    assert last["train"]["loss"] < first["train"]["loss"]
    assert last["valid"]["mel"] < first["valid"]["mel"]
    # One result per bandwidth: 1 codebook = 8 kbps, 4 codebooks = 32 kbps (hop 16, 256 bins).
    assert set(last["evaluate"]) == {"si_snr_8kbps", "mel_8kbps", "si_snr_32kbps", "mel_32kbps"}
    assert last["evaluate"]["mel_32kbps"] < last["evaluate"]["mel_8kbps"]
    samples = sorted((Path(cfg.xp.folder) / "samples" / "2").glob("*.wav"))
    assert len(samples) == 4
    original, rate = soundfile.read(samples[0])
    reconstructed, _ = soundfile.read(samples[1])
    assert rate == 16000 and original.shape == reconstructed.shape and abs(reconstructed).max() > 0


def test_gpu_size_config_composes_and_builds(env: Path) -> None:
    from baton.models.codec import build_compression_model

    cfg = compose(["solver=compression/default"])
    model = build_compression_model(cfg.model)
    assert model.hop_length == 320 and model.bandwidth() == pytest.approx(6.0)
    assert cfg.autocast and cfg.device == "auto"
