"""The example task, driven from the command line as a user would."""

from __future__ import annotations

from pathlib import Path

from tests.xp.conftest import baton_cli


def test_fewer_training_items_than_one_batch_is_one_line(tmp_path: Path):
    result = baton_cli("run", "solver=example", "task.num_train=8", "dataset.batch_size=16",
                       cwd=tmp_path, env={"BATON_XP_DIR": str(tmp_path / "xps")})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        "error: no batch to train on: 8 item(s) give 8 per rank on 1 rank(s), fewer than one "
        "batch of 16 per rank (global batch size 16), and drop_last drops partial batches; set "
        "dataset.batch_size to 8 or less, set dataset.drop_last=false, or add data"
    )
