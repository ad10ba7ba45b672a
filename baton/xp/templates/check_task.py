"""__NAME__ learns: a short run whose loss falls. `python -m pytest tests` runs it."""

from pathlib import Path

from baton.config import compose

from __NAME__ import __CLASS__

PROJECT = Path(__file__).resolve().parents[1]


def test___NAME___learns(tmp_path: Path):
    overrides = ["solver=__NAME__", "optim.epochs=2", "task.num_train=256"]
    overrides += ["task.num_valid=64", "logging.tensorboard=false"]
    cfg = compose(overrides, config_dir=str(PROJECT / "conf"))
    with __CLASS__(cfg, folder=tmp_path) as solver:  # in tmp_path, not outputs/
        history = solver.run()
    assert len(history) == 2
    assert history[-1]["train"]["loss"] < history[0]["train"]["loss"]
    # Better than leaving the noise in:
    assert history[-1]["valid"]["loss"] < cfg.task.noise**2
    assert (tmp_path / "samples" / "2" / "0_denoised.wav").is_file()
