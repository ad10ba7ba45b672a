"""The engine owns DDP: `baton run` started once per rank (as torchrun does) trains ONE model,
the same on every rank, and the same (within float tolerance) as one process with the same
global batch. Real processes over gloo, through the CLI; the tasks hold no DDP code."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = ["solver=example", "task.dropout=0", "task.num_train=256", "task.num_valid=32",
           "dataset.batch_size=32", "optim.epochs=2", "logging.tensorboard=false", "num_threads=1"]
COMPRESSION = ["solver=compression/debug", "optim.epochs=1", "optim.updates_per_epoch=4",
               "dataset.batch_size=4", "dataset.segment_duration=0.25", "dataset.valid.num_samples=4",
               "evaluate.n_q=[4]", "generate.num_samples=1", "logging.tensorboard=false", "num_threads=1"]


def run_baton(tmp: Path, name: str, args: list[str], world: int, xp_dir: Path | None = None) -> list[dict]:
    """`baton run ARGS` on `world` ranks (XPs in `xp_dir`, else tmp/name/xps); returns each
    rank's trained weights."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dumps = tmp / name / "dumps"
    procs = []
    for rank in range(world):
        env = {**os.environ, "PYTHONPATH": str(REPO), "BATON_XP_DIR": str(xp_dir or tmp / name / "xps")}
        if world > 1:
            env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tests.solver.cli_rank_dump", str(dumps), "run", *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for proc in procs:
        out, _ = proc.communicate(timeout=400)
        assert proc.returncode == 0, out[-3000:]
    return [torch.load(dumps / f"rank{rank}.pt", weights_only=True) for rank in range(world)]


def assert_same_model(one: dict, other: dict, *, exact: bool = False, atol: float = 1e-5) -> None:
    """Equal bit for bit across ranks (one all-reduced gradient); within float tolerance across
    world sizes (gradients summed in another order, which Adam's normalisation amplifies).

    Codebook statistics (EMA counts and sums) move by whole assignments: a latent that sits on a
    near-tie between two codes may go either way, worth 1 - decay = 0.01 in a count.
    """
    for key, value in one.items():
        if exact:
            assert torch.equal(value, other[key]), key
        elif key.endswith(("cluster_size", "embed_sum")):
            torch.testing.assert_close(value, other[key], rtol=1e-3, atol=0.03, msg=key)
        else:
            torch.testing.assert_close(value, other[key], rtol=1e-3, atol=atol, msg=key)


@pytest.fixture(scope="module")
def example_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], list[dict]]:
    """The example task on 2 ranks and on 1 process, shared by the tests that read its weights
    and its metrics. 33 valid/evaluate items: rank 0 gets 17 and rank 1 gets 16 (validation
    does not train, so the weights are those of any valid set)."""
    tmp = tmp_path_factory.mktemp("example_runs")
    args = [*EXAMPLE, "task.num_valid=33"]
    return tmp, run_baton(tmp, "two", args, world=2), run_baton(tmp, "one", args, world=1)


@pytest.mark.timeout(300)
def test_two_ranks_train_one_example_model_equal_to_one_process(example_runs) -> None:
    _, (first, second), (alone,) = example_runs
    assert first["wrapped"] == {"model": "EngineDDP"} and alone["wrapped"] == {"model": "RegressionNet"}
    assert_same_model(first["weights"]["model"], second["weights"]["model"], exact=True)
    assert_same_model(first["weights"]["model"], alone["weights"]["model"])


def history(tmp: Path, name: str) -> list[dict]:
    import json

    (folder,) = (tmp / name / "xps" / "xps").iterdir()
    return [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]


@pytest.mark.timeout(300)
def test_metrics_over_uneven_shards_average_every_item_once(example_runs) -> None:
    """33 valid/evaluate items on 2 ranks: 17 and 16, none repeated; the means equal one process's."""
    tmp_path = example_runs[0]
    for two, one in zip(history(tmp_path, "two"), history(tmp_path, "one"), strict=True):
        for stage in ("valid", "evaluate"):
            for key, value in one[stage].items():
                assert two[stage][key] == pytest.approx(value, rel=1e-4), f"{stage}.{key}"


@pytest.mark.timeout(600)
def test_two_ranks_train_one_codec_equal_to_one_process(tmp_path: Path, synth_cache: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_DATA_DIR", str(synth_cache))
    args = [arg for arg in COMPRESSION if not arg.startswith("generate.")] + ["generate.num_samples=3"]
    first, second = run_baton(tmp_path, "two", args, world=2)
    (alone,) = run_baton(tmp_path, "one", args, world=1)
    assert_same_model(first["weights"]["model"], second["weights"]["model"], exact=True)
    # Codebooks included: k-means init and dead-code replacement draw from the global batch
    # (drawn from rank 0's half, the codebooks differ by ~0.1, and so does everything after).
    assert_same_model(first["weights"]["model"], alone["weights"]["model"], atol=5e-4)
    # generate on 2 ranks: each test item written once (rank 0 has items 0 and 2, rank 1 item
    # 1), under the names one process gives them, holding the same audio.
    two, one = (samples(tmp_path, name) for name in ("two", "one"))
    assert sorted(two) == sorted(one) and len(one) == 6
    assert [name[:2] for name in sorted(one)] == ["00", "00", "01", "01", "02", "02"]
    for name in one:
        if name.endswith("_original.wav"):
            assert two[name] == one[name], name


def samples(tmp: Path, name: str) -> dict[str, bytes]:
    (folder,) = (tmp / name / "xps" / "xps").iterdir()
    return {p.name: p.read_bytes() for p in (folder / "samples" / "1").glob("*.wav")}


GAN = ["solver=gan/debug", "optim.epochs=1", "optim.updates_per_epoch=4", "dataset.batch_size=4",
       "dataset.segment_duration=0.064", "dataset.valid.num_samples=4", "generate.num_samples=1",
       "networks.generator.channels=16", "networks.generator.resblock_kernels=[3]",
       "networks.mpd.periods=[2,3]", "networks.mpd.channels=[4,8]", "networks.msd.channels=[4,8]",
       "+steps.generator.losses.adv_msd.after=2", "+steps.discriminator.losses.disc_msd.after=2",
       "logging.tensorboard=false", "num_threads=1"]


@pytest.mark.timeout(600)
def test_two_ranks_train_one_yaml_gan_equal_to_one_process(tmp_path: Path, synth_cache: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Config-driven steps under DDP: each step's networks are wrapped and synchronised, the
    others are called plainly with no gradient. Until update 2, the generator's msd loss joins
    its graph times 0 (it reads the generator's output), and the discriminator's msd loss is
    skipped, so msd does not run in that step: both as DDP needs, and as one process trains."""
    monkeypatch.setenv("BATON_DATA_DIR", str(synth_cache))
    first, second = run_baton(tmp_path, "two", GAN, world=2)
    (alone,) = run_baton(tmp_path, "one", GAN, world=1)
    assert first["wrapped"] == {"generator": "EngineDDP", "mpd": "EngineDDP", "msd": "EngineDDP"}
    for name in ("generator", "mpd", "msd"):
        assert_same_model(first["weights"][name], second["weights"][name], exact=True)
        assert_same_model(first["weights"][name], alone["weights"][name], atol=1e-4)


LM = ["solver=lm/debug", "optim.epochs=1", "optim.updates_per_epoch=3", "dataset.batch_size=8",
      "dataset.segment_duration=0.25", "dataset.valid.num_samples=8", "lm.dim=32", "lm.layers=1",
      "lm.heads=2", "conditioner.cfg_dropout=0", "tokens.cache=true", "dataset.train.random_crop=false",
      "generate.num_samples=2", "logging.tensorboard=false", "num_threads=1"]


@pytest.mark.timeout(600)
def test_two_ranks_train_one_lm_equal_to_one_process(tmp_path: Path, synth_cache: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The LM over a real (tiny) codec XP, named by its folder since each run has its own XP
    root. Rank 0 writes the token cache of every item while the other rank waits; then each
    rank trains on its half of every batch. CFG dropout is off: it draws per item from each
    rank's own generator, so two ranks and one process would drop different items."""
    monkeypatch.setenv("BATON_DATA_DIR", str(synth_cache))
    run_baton(tmp_path, "codec", [*COMPRESSION, "model.ratios=[8,5,4]"], world=1)
    (codec,) = (tmp_path / "codec" / "xps" / "xps").iterdir()
    args = [*LM, f"compression_model_checkpoint={codec}"]
    first, second = run_baton(tmp_path, "two", args, world=2)
    (alone,) = run_baton(tmp_path, "one", args, world=1)
    assert first["wrapped"] == {"model": "EngineDDP"}
    assert_same_model(first["weights"]["model"], second["weights"]["model"], exact=True)
    assert_same_model(first["weights"]["model"], alone["weights"]["model"], atol=1e-4)
    caches = [sorted((tmp_path / name / "xps" / "token_cache").rglob("train-*.pt")) for name in ("two", "one")]
    assert [len(found) for found in caches] == [1, 1]
    two, one = (torch.load(found[0], weights_only=True) for found in caches)
    assert torch.equal(two["codes"], one["codes"]) and torch.equal(two["labels"], one["labels"])
