"""An XP stopped on 2 ranks resumes on 1 and on 4 (and one stopped on 1 process resumes on 2)
with the same global sample order and the same global batch (8 items an update: 8, 4 or 2 per
rank), and ends equal to the 2-rank run never stopped, within float tolerance (the gradients
are summed in another order). Under DDP (single-file checkpoints) and under FSDP (sharded
checkpoints: each rank of the new world size reads its own shards, one process reads them whole).

Real processes over gloo (`world_size_worker.py`, launched by `ranks.py`). The example task
runs with `task.dropout=0`: on a change of world size the per-rank training RNG is reseeded
from (seed, rank, update) (`baton/solver/loop_state.py`, with a warning), so dropout masks
would differ from the uninterrupted run's: the items would still match, the weights would not.
90 training items, not a multiple of 4 nor of 8, and `dataset.drop_last=false` (the default
drops the short batch, which needs no padding): each data epoch ends with a padded update (2
items wrapped around to 8), which a sampler padded to the world size would make differ.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from baton.checkpoint import CheckpointManager, read_checkpoint
from tests.solver.ranks import finish, launch_ranks

# 12 updates an epoch (ceil(90 / 8)), 3 epochs; evaluation shards of 24 items fit 4 ranks.
RUN = ["task.dropout=0", "task.num_train=90", "task.num_valid=24", "dataset.batch_size=8", "dataset.drop_last=false",
       "optim.epochs=3", "logging.tensorboard=false", "num_threads=1"]
UPDATES_PER_EPOCH = 12
# Rank 0 signals itself during update 3; 2 ranks agree on stops every 10 updates, so the run
# stops at update 10, two updates before the end of epoch 1: its padded last update and the
# next two epochs run on the new world size.
STOP_AT, STOPPED_AT = 3, 10


def train(folder: Path, records: Path, world: int, *extra: str) -> list[int]:
    """Run (or resume) the XP in `folder` on `world` ranks; `extra` holds the strategy."""
    records.mkdir(parents=True, exist_ok=True)
    return finish(launch_ranks(folder, [*extra, *RUN], world=world,
                               module="tests.solver.world_size_worker", args=(str(records),)))


def updates(records: Path, world: int) -> dict[int, tuple[int, list[int]]]:
    """Update -> (epoch, its items all ranks together): rank r's j-th item at r + W*j, so the
    list is the update's chunk of the epoch's order, whatever W."""
    per_rank = [[json.loads(line) for line in (records / f"rank{rank}.jsonl").read_text().splitlines()]
                for rank in range(world)]
    assert len({len(lines) for lines in per_rank}) == 1, "every rank trains the same number of batches"
    found: dict[int, tuple[int, list[int]]] = {}
    for lines in zip(*per_rank, strict=True):
        assert len({(line["epoch"], line["update"]) for line in lines}) == 1, lines
        merged = [-1] * sum(len(line["items"]) for line in lines)
        for rank, line in enumerate(lines):
            merged[rank::world] = line["items"]
        assert lines[0]["update"] not in found, "one batch per update (no accumulation)"
        found[lines[0]["update"]] = (lines[0]["epoch"], merged)
    return found


def final(folder: Path) -> dict[str, Any]:
    """The checkpoint's weights, whole (read from the shards under FSDP), and the history."""
    data = CheckpointManager(folder).load()
    assert data is not None
    state = data["state"]
    history = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    return {"model": state["registered"]["model"], "ema": state["ema"]["averages"], "history": history}


def assert_close_history(resumed: list[dict], straight: list[dict]) -> None:
    assert len(resumed) == len(straight) == 3
    for epoch, (one, other) in enumerate(zip(resumed, straight, strict=True), 1):
        assert one.keys() == other.keys(), epoch
        for stage, metrics in other.items():
            assert one[stage].keys() == metrics.keys(), (epoch, stage)
            for key, value in metrics.items():
                assert one[stage][key] == pytest.approx(value, rel=1e-5, abs=1e-7), f"epoch {epoch} {stage}.{key}"


@pytest.fixture(scope="module", params=["ddp", pytest.param("fsdp", marks=pytest.mark.slow)])
def straight(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """The 2-rank run never stopped, under each strategy: its XP folder, its records, and the
    strategy's override."""
    strategy = f"distributed.strategy={request.param}"
    root = tmp_path_factory.mktemp(f"straight_{request.param}")
    assert train(root / "xp", root / "records", 2, strategy) == [0, 0]
    return root / "xp", root / "records", strategy


@pytest.mark.timeout(600)
def test_stopped_on_two_ranks_resumes_on_one_and_on_four_in_the_same_order(
    tmp_path: Path, straight: tuple[Path, Path, str]
) -> None:
    straight_xp, straight_records, strategy = straight
    expected = updates(straight_records, 2)
    assert sorted(expected) == list(range(3 * UPDATES_PER_EPOCH))
    assert all(len(items) == 8 for _, items in expected.values()), "every update, the last included"

    stopped = tmp_path / "stopped"
    assert train(stopped, tmp_path / "before", 2, strategy, f"--stop-at-update={STOP_AT}") == [128 + signal.SIGTERM] * 2
    saved = read_checkpoint(stopped / "checkpoint.th")["state"]["loop"]
    assert (saved["update"], saved["epoch"], saved["train_done"]) == (STOPPED_AT, 1, STOPPED_AT)
    before = updates(tmp_path / "before", 2)
    assert sorted(before) == list(range(STOPPED_AT)), "the stop lands on an update boundary"
    shutil.copytree(stopped, tmp_path / "stopped_copy")

    for world, folder in ((1, stopped), (4, tmp_path / "stopped_copy")):
        records = tmp_path / f"after{world}"
        assert train(folder, records, world, strategy) == [0] * world
        log = (folder / "solver.log").read_text()
        assert f"checkpoint from 2 rank(s), running on {world}: training RNG reseeded" in log
        assert "training data position saved on" not in log  # the order keeps: no data warning
        after = updates(records, world)
        assert sorted(after) == list(range(STOPPED_AT, 3 * UPDATES_PER_EPOCH))
        # The items of every update, all ranks together, in the same order as never stopped.
        assert {**before, **after} == expected, world

        # Measured on CPU: weights within 3e-8, metrics within 2e-8 of the uninterrupted run's.
        resumed, reference = final(folder), final(straight_xp)
        for part in ("model", "ema"):
            for key, value in reference[part].items():
                torch.testing.assert_close(resumed[part][key], value, rtol=1e-4, atol=1e-6, msg=f"{world}: {part}.{key}")
        assert_close_history(resumed["history"], reference["history"])


@pytest.mark.slow  # 2 -> 1 and 2 -> 4 under DDP run in the fast suite
@pytest.mark.timeout(600)
def test_stopped_on_one_process_resumes_on_two_in_the_same_order(
    tmp_path: Path, straight: tuple[Path, Path, str]
) -> None:
    """1 -> 2: the checkpoint of one process (a single file, whatever the strategy) is cut into
    shards by each FSDP rank, or loaded whole by each DDP rank."""
    straight_xp, straight_records, strategy = straight
    expected = updates(straight_records, 2)
    stopped = tmp_path / "stopped"
    # Alone, the process stops at the very update it was signalled in.
    assert train(stopped, tmp_path / "before", 1, strategy, f"--stop-at-update={STOP_AT}") == [128 + signal.SIGTERM]
    before = updates(tmp_path / "before", 1)
    assert sorted(before) == list(range(STOP_AT + 1))
    assert train(stopped, tmp_path / "after", 2, strategy) == [0, 0]
    after = updates(tmp_path / "after", 2)
    assert {**before, **after} == expected
    resumed, reference = final(stopped), final(straight_xp)
    for part in ("model", "ema"):
        for key, value in reference[part].items():
            torch.testing.assert_close(resumed[part][key], value, rtol=1e-4, atol=1e-6, msg=f"{part}.{key}")
    assert_close_history(resumed["history"], reference["history"])
