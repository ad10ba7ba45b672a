"""The compression task trains for real on the built-in dataset (a shortened `compression/debug`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile

from baton.config import compose
from baton.errors import ConfigError
from baton.tasks.compression import CompressionSolver
from tests.data.audio_files import manifest_line, write_manifest_lines, write_tone

SHORT = ["solver=compression/debug", "optim.epochs=2", "optim.updates_per_epoch=12",
         "dataset.batch_size=8", "evaluate.n_q=[1,4]", "generate.num_samples=2",
         "logging.tensorboard=false", "num_threads=1", "generate.picture=false"]


def test_shortened_debug_run_learns_and_writes_samples(env: Path) -> None:
    cfg = compose([*SHORT, "logging.tensorboard=true", "generate.picture=true"])
    with CompressionSolver(cfg) as solver:
        history = solver.run()
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
    # The same pairs reach TensorBoard: both clips and their spectrograms, one above the other.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(Path(cfg.xp.folder) / "tensorboard"), size_guidance={"audio": 0, "images": 0}).Reload()
    tags = events.Tags()
    stem = samples[0].name.rsplit("_", 1)[0]
    assert {f"generate/{stem}/original", f"generate/{stem}/reconstructed"} <= set(tags["audio"])
    (image,) = events.Images(f"generate/{stem}/mel_original_above_reconstructed")
    assert image.height > 2 * 80 and image.step == 2
    # And one picture beside the samples: their spectrograms above the curves (generate.picture).
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    picture = Path(cfg.xp.folder) / "samples" / "2" / "overview.png"
    from matplotlib.image import imread

    pixels = imread(picture)
    # Two spectrogram rows (generate.num_samples=2) above the curves, 10 inches wide at 100 dpi.
    assert pixels.shape[1] == 1000 and pixels.shape[0] > 400
    assert pixels[..., :3].std() > 0.1  # drawn, not blank


def test_without_matplotlib_generate_says_so_and_writes_the_samples(env: Path, monkeypatch, caplog) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    cfg = compose([*SHORT, "optim.epochs=1", "optim.updates_per_epoch=2", "generate.picture=true"])
    CompressionSolver(cfg).run()
    samples = Path(cfg.xp.folder) / "samples" / "1"
    assert len(list(samples.glob("*.wav"))) == 4 and not (samples / "overview.png").exists()
    assert "no overview.png: drawing a picture needs matplotlib: pip install 'baton[plot]'" in caplog.text


def test_gpu_size_config_composes_and_builds(env: Path) -> None:
    from baton.models.codec import build_compression_model

    cfg = compose(["solver=compression/default"])
    model = build_compression_model(cfg.model)
    assert model.hop_length == 320 and model.bandwidth() == pytest.approx(6.0)
    assert cfg.autocast and cfg.device == "auto"


def labelled_manifest(folder: Path, labels: list[str]) -> Path:
    """One second of tone per label, and its manifest: a user's own data."""
    lines = [manifest_line(write_tone(folder / f"{i}.wav", 1.0, freq=220.0 * (i + 1)), 1.0, label=label)
             for i, label in enumerate(labels)]
    return write_manifest_lines(folder / "data.jsonl", lines)


def on_manifest(manifest: Path, *overrides: str) -> list[str]:
    """SHORT, every split reading `manifest`."""
    splits = [f"dataset.{split}.manifest={manifest}" for split in ("train", "valid", "evaluate", "generate")]
    return [*SHORT, *splits, *overrides]


def test_labels_from_the_manifest_are_names_not_paths(env: Path) -> None:
    labels = ["speech/male", "../../escape", ".hidden", "/etc/passwd"]
    manifest = labelled_manifest(env / "mine", labels)
    cfg = compose(on_manifest(manifest, "optim.epochs=1", "optim.updates_per_epoch=2",
                              "dataset.batch_size=4", "generate.num_samples=4", "evaluate.n_q=[4]"))
    CompressionSolver(cfg).run()

    samples = Path(cfg.xp.folder) / "samples" / "1"
    assert sorted(p.name for p in samples.iterdir()) == sorted(
        f"{i:02d}_{name}_{kind}.wav"
        for i, name in enumerate(["speech_male", "_.._escape", "hidden", "_etc_passwd"])
        for kind in ("original", "reconstructed")
    )
    written = {p for p in env.rglob("*.wav")} - set((env / "mine").glob("*.wav"))
    assert written == set(samples.iterdir())  # nothing outside samples/1/


def test_fewer_items_than_one_batch_is_one_line_naming_the_numbers(env: Path) -> None:
    manifest = labelled_manifest(env / "mine", ["a", "b", "c"])
    with pytest.raises(ConfigError) as error:
        CompressionSolver(compose(on_manifest(manifest, "dataset.batch_size=8")))
    message = str(error.value)
    assert "\n" not in message
    assert "3 item(s) give 3 per rank on 1 rank(s), fewer than one batch of 8 per rank" in message
    assert "set dataset.batch_size to 3 or less, set dataset.drop_last=false" in message


def test_evaluate_metrics_from_the_command_line_reach_the_results_and_info(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from baton.__main__ import main

    args = ["run", *SHORT, "optim.epochs=1", "optim.updates_per_epoch=2", "evaluate.n_q=[1,4]",
            "evaluate.metrics=[si_snr,visqol,pesq,stoi]", "evaluate.metrics_items=3"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    names = [f"{metric}_{kbps}kbps" for metric in ("si_snr", "visqol", "pesq", "stoi") for kbps in (8, 32)]
    assert all(name in printed for name in names)
    (history_file,) = (env / "xps" / "xps").glob("*/history.jsonl")
    evaluated = json.loads(history_file.read_text().splitlines()[-1])["evaluate"]
    assert sorted(evaluated) == sorted(names)  # mel is not listed, so not scored
    assert 1.0 <= evaluated["visqol_32kbps"] <= 5.0 and 1.0 <= evaluated["pesq_32kbps"] <= 4.65
    assert 0.0 <= evaluated["stoi_32kbps"] <= 1.0

    assert main(["info", "-m", history_file.parent.name]) == 0
    table = capsys.readouterr().out
    assert "visqol_32kbps" in table and "pesq_8kbps" in table


def test_an_unknown_or_missing_metric_is_refused_before_the_run(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    with pytest.raises(ConfigError, match=r"unknown metric name 'visqoll' \(did you mean 'visqol'\?\)"):
        CompressionSolver.check_config(compose([*SHORT, "evaluate.metrics=[si_snr,visqoll]"]))
    monkeypatch.setitem(sys.modules, "pesq", None)
    with pytest.raises(ConfigError, match=r"pip install 'baton\[pesq\]'$"):
        CompressionSolver.check_config(compose([*SHORT, "evaluate.metrics=[pesq]"]))
