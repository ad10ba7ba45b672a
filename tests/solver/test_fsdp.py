"""FSDP2 owned by the engine (`distributed.strategy=fsdp`), on real gloo processes: each rank
holds a shard of the weights and optimizer state, the run trains ONE model equal (float
tolerance) to DDP's and to one process's with the global batch, and its checkpoints are
sharded folders committed by checkpoint.th: killed mid-save it resumes from the previous one,
crafted files in it are refused, and `baton export` / `baton.load_model` read it whole."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from baton.checkpoint import read_checkpoint
from baton.errors import CheckpointError, UnsafeCheckpointError
from tests.solver.ranks import ROOT, finish, free_port, launch_ranks
from tests.solver.test_ddp_parity import EXAMPLE, GAN, assert_same_model, run_baton

FSDP = "distributed.strategy=fsdp"


@pytest.fixture(scope="module")
def fsdp_example(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """The example task under FSDP on 2 ranks through the CLI (`baton run` once per rank)."""
    tmp = tmp_path_factory.mktemp("fsdp_example")
    return tmp, run_baton(tmp, "fsdp", [*EXAMPLE, FSDP], world=2)


def xp_folder(tmp: Path, name: str) -> Path:
    (folder,) = (tmp / name / "xps" / "xps").iterdir()
    return folder


@pytest.mark.timeout(300)
def test_two_fsdp_ranks_train_the_example_model_equal_to_ddp_and_to_one_process(fsdp_example) -> None:
    tmp, (first, second) = fsdp_example
    ddp, _ = run_baton(tmp, "ddp", EXAMPLE, world=2)
    (alone,) = run_baton(tmp, "one", EXAMPLE, world=1)
    assert first["wrapped"] == {"model": "FSDPRegressionNet"}  # sharded in place, not wrapped
    assert_same_model(first["weights"]["model"], second["weights"]["model"], exact=True)
    assert_same_model(first["weights"]["model"], ddp["weights"]["model"])
    assert_same_model(first["weights"]["model"], alone["weights"]["model"])


@pytest.mark.timeout(300)
def test_a_sharded_checkpoint_is_a_dcp_folder_that_checkpoint_th_names(fsdp_example) -> None:
    tmp, (first, _) = fsdp_example
    folder = xp_folder(tmp, "fsdp")
    latest = read_checkpoint(folder / "checkpoint.th")
    shards = folder / latest["shards"]
    assert sorted(p.name for p in shards.iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    # Every folder a checkpoint file names is kept, and no other (pruned after each commit).
    named = {read_checkpoint(p)["shards"] for p in folder.glob("checkpoint*.th")}
    assert {f"shards/{p.name}" for p in (folder / "shards").iterdir()} == named
    # The weights sit in the shards: checkpoint.th holds placeholders where tensors were.
    weight = latest["state"]["registered"]["model"]["net.0.weight"]
    assert weight["__baton_shard__"] and weight["shape"] == list(first["weights"]["model"]["net.0.weight"].shape)


@pytest.mark.timeout(300)
def test_export_and_load_model_read_a_sharded_xp_whole_without_a_process_group(fsdp_example) -> None:
    """`baton export` of a 2-rank FSDP XP gives plain weights that load into the model in one
    process and reproduce its outputs; `baton.load_model(SIG)` builds it with them."""
    tmp, (first, _) = fsdp_example
    folder = xp_folder(tmp, "fsdp")
    out = tmp / "model.pt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BATON_XP_DIR": str(tmp / "fsdp" / "xps")}
    done = subprocess.run([sys.executable, "-m", "baton", "export", folder.name, "-o", str(out), "--source", "last"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    exported = torch.load(out, weights_only=True)
    assert set(exported) == set(first["weights"]["model"])
    for key, value in first["weights"]["model"].items():
        assert torch.equal(exported[key], value), key

    from baton.xp.load import load_model

    model = load_model(folder, "last")
    trained = load_model(folder, "last")
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.load_state_dict(exported)
        x = torch.randn(5, 16, generator=torch.Generator().manual_seed(0))
        assert torch.equal(model(x), trained(x))


@pytest.mark.slow  # two 2-rank GAN runs; the example's FSDP parity runs in the fast suite
@pytest.mark.timeout(300)
def test_two_fsdp_ranks_train_the_yaml_gan_equal_to_ddp(tmp_path: Path, synth_cache: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Config-driven steps: generator and both discriminators are sharded, each step's
    optimizer steps its shards."""
    monkeypatch.setenv("BATON_DATA_DIR", str(synth_cache))
    first, second = run_baton(tmp_path, "fsdp", [*GAN, FSDP], world=2)
    ddp, _ = run_baton(tmp_path, "ddp", GAN, world=2)
    assert first["wrapped"] == {"generator": "FSDPMelVocoder", "mpd": "FSDPMultiPeriodDiscriminator",
                                "msd": "FSDPMultiScaleDiscriminator"}
    for name, weights in first["weights"].items():
        assert_same_model(weights, second["weights"][name], exact=True)
        assert_same_model(weights, ddp["weights"][name])


def launch(folder: Path, *args: str, world: int = 2) -> list[int]:
    return finish(launch_ranks(folder, list(args), free_port(), world=world, module="tests.solver.fsdp_worker"))


# 256 items, global batch 32: 8 updates an epoch; a save every 3 updates and at each epoch end.
SAVED_RUN = ["optim.epochs=2", "task.num_train=256", "task.dropout=0", "checkpoint.every_updates=3",
             "logging.tensorboard=false", "num_threads=1"]


@pytest.fixture(scope="module")
def straight_fsdp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("straight_fsdp")
    assert launch(folder, *SAVED_RUN) == [0, 0]
    return folder


@pytest.mark.timeout(300)
@pytest.mark.slow  # three 2-rank runs each; the single-file format's kill tests run in the fast suite
@pytest.mark.parametrize("when", ["data", "commit"])
def test_a_kill_during_a_sharded_save_resumes_from_the_previous_one_bit_exact(
        tmp_path: Path, straight_fsdp: Path, when: str) -> None:
    """SIGKILL on every rank during the 3rd save (update 8, the first epoch's end): with shard
    files half written, or with the folder complete but not yet named by checkpoint.th. The
    rerun resumes from the 2nd save (update 6) and ends equal, bit for bit, to a run never
    stopped; the orphaned folder is removed."""
    folder = tmp_path / "killed"
    procs = launch_ranks(folder, [f"--kill-at-save=3:{when}", *SAVED_RUN], free_port(), module="tests.solver.fsdp_worker")
    for proc in procs:
        proc.communicate(timeout=300)
        assert proc.returncode == -9
    saved = read_checkpoint(folder / "checkpoint.th")
    assert saved["state"]["loop"]["update"] == 6
    assert len(list((folder / "shards").iterdir())) == 2  # the committed one, and the orphan
    assert launch(folder, *SAVED_RUN) == [0, 0]
    for rank in range(2):
        resumed, straight = (torch.load(f / f"rank{rank}.pt", weights_only=True) for f in (folder, straight_fsdp))
        assert_same_model(resumed["weights"], straight["weights"], exact=True)
    assert (folder / "history.jsonl").read_bytes() == (straight_fsdp / "history.jsonl").read_bytes()
    named = {read_checkpoint(p)["shards"] for p in folder.glob("checkpoint*.th")}
    assert {f"shards/{p.name}" for p in (folder / "shards").iterdir()} == named


class RunsCode:
    """A pickle that runs `touch MARKER` when unpickled (what a crafted file would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("target", [".metadata", pytest.param("__0_0.distcp", marks=pytest.mark.slow)])
def test_a_crafted_file_in_a_sharded_checkpoint_is_refused_and_nothing_runs(
        tmp_path: Path, straight_fsdp: Path, target: str) -> None:
    import shutil

    from baton.checkpoint import CheckpointManager

    folder = tmp_path / "xp"
    shutil.copytree(straight_fsdp, folder)
    marker = tmp_path / "ran"
    shards = folder / read_checkpoint(folder / "checkpoint.th")["shards"]
    size = (shards / target).stat().st_size
    crafted = pickle.dumps(RunsCode(marker))  # a shard file's first tensor is read at offset 0
    (shards / target).write_bytes(crafted + bytes(max(0, size - len(crafted))))
    with pytest.raises(UnsafeCheckpointError) as refused:
        CheckpointManager(folder).load()
    message = str(refused.value)
    assert "\n" not in message and "refused" in message and str(shards) in message
    assert not marker.exists()
    # The engine refuses it the same way on resume: one line, exit code 2, nothing run.
    procs = launch_ranks(folder, SAVED_RUN, world=1, module="tests.solver.fsdp_worker")
    out, _ = procs[0].communicate(timeout=120)
    assert procs[0].returncode != 0 and "refused" in out.decode()
    assert not marker.exists()


def test_a_deleted_shard_folder_falls_back_to_the_previous_kept_checkpoint(tmp_path: Path, straight_fsdp: Path,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    """The latest checkpoint and its kept copy name the folder that is gone: both are skipped,
    with a line naming the folder, and the epoch-1 checkpoint (its own folder) is used."""
    import shutil

    from baton.checkpoint import CheckpointManager

    folder = tmp_path / "xp"
    shutil.copytree(straight_fsdp, folder)
    shutil.rmtree(folder / read_checkpoint(folder / "checkpoint.th")["shards"])
    data = CheckpointManager(folder).load()
    assert data is not None and data["epoch"] == 1
    assert "missing or incomplete" in caplog.text
    assert isinstance(data["state"]["registered"]["model"]["net.0.weight"], torch.Tensor)
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        (folder / "checkpoint_1.th").unlink()
        CheckpointManager(folder).load()


@pytest.mark.slow  # three 2-rank runs on a tmpfs
@pytest.mark.timeout(300)
def test_a_full_disk_at_a_sharded_save_is_one_line_and_the_run_resumes_bit_exact(tmp_path: Path) -> None:
    """A 4 MB tmpfs holds epoch 1's sharded checkpoint (about 2.6 MB: weights, Adam's two
    moments, the best state) but not epoch 2's beside it: every rank stops with one line, the
    previous checkpoint is intact and no partial folder is left; with room, the run resumes and
    ends equal, bit for bit, to one that never failed."""
    import subprocess as sp

    from tests.xp.test_disk_faults import mount_tmpfs

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "4m")
    try:
        args = ["optim.epochs=2", "task.hidden=4096", "task.num_train=128", "task.num_valid=32",
                "optim.ema.use=false", "logging.tensorboard=false", "num_threads=1", FSDP]
        port, procs = free_port(), []
        for rank in range(2):
            env = {**os.environ, "PYTHONPATH": str(ROOT), "BATON_XP_DIR": str(disk), "RANK": str(rank),
                   "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
            procs.append(sp.Popen([sys.executable, "-m", "baton", "run", "solver=example", *args], env=env,
                                  stdout=sp.PIPE, stderr=sp.PIPE, text=True))
        for proc in procs:
            _, err = proc.communicate(timeout=240)
            assert proc.returncode == 2, err[-2000:]
            (line,) = err.strip().splitlines()
            assert line.startswith("error: cannot write sharded checkpoint ") and "No space left on device" in line, err
        (folder,) = disk.glob("xps/*")
        saved = read_checkpoint(folder / "checkpoint.th")
        assert saved["epoch"] == 1 and (folder / saved["shards"] / ".metadata").is_file()
        assert [p.name for p in (folder / "shards").iterdir()] == [saved["shards"].split("/")[1]]

        sp.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        resumed = run_baton(tmp_path, "resumed", ["solver=example", *args], world=2, xp_dir=disk)
        straight = run_baton(tmp_path, "straight", ["solver=example", *args], world=2)
        assert_same_model(resumed[0]["weights"]["model"], straight[0]["weights"]["model"], exact=True)
    finally:
        sp.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow  # the Brain worker's FSDP parity runs in the fast suite
@pytest.mark.timeout(300)
def test_a_brain_task_under_fsdp_trains_equal_to_ddp_and_its_checkpointer_writes_whole_files(
        tmp_path: Path, synth_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The classification task (a Brain with a Checkpointer) on 2 FSDP ranks through the CLI:
    equal to DDP (not to one process: its BatchNorm normalises each rank's half batch). The
    Checkpointer's files hold whole tensors, gathered by both ranks: they load anywhere."""
    from tests.tasks.test_classification import SMALL

    monkeypatch.setenv("BATON_DATA_DIR", str(synth_cache))
    args = [*SMALL, "optim.epochs=1"]
    first, second = run_baton(tmp_path, "fsdp", [*args, FSDP], world=2)
    ddp, _ = run_baton(tmp_path, "ddp", args, world=2)
    assert first["wrapped"] == {"model": "FSDPAudioClassifier"}
    assert_same_model(first["weights"]["model"], second["weights"]["model"], exact=True)
    assert_same_model(first["weights"]["model"], ddp["weights"]["model"])
    (saved,) = xp_folder(tmp_path, "fsdp").glob("save/CKPT+*/model.ckpt")
    whole = torch.load(saved, weights_only=True)
    assert all(type(v) is torch.Tensor for v in whole.values())
    assert_same_model(whole, first["weights"]["model"], exact=True)


def test_blocks_the_model_does_not_hold_are_one_line_naming_its_classes() -> None:
    from torch import nn

    from baton.errors import ConfigError
    from baton.solver.fsdp import shard_trainable

    with pytest.raises(ConfigError, match=r"distributed.fsdp.blocks names DecoderLayr, which no trainable module "
                                          r"holds; name classes of the model's blocks \(it has Linear, ReLU, Sequential\)"):
        shard_trainable({"model": nn.Sequential(nn.Linear(2, 2), nn.ReLU())}, blocks=["DecoderLayr"])


def test_fsdp_with_float16_autocast_is_refused_at_start_up() -> None:
    from baton.errors import ConfigError
    from baton.solver.settings import LoopSettings
    from tests.helpers import example_config

    cfg = example_config("unused", FSDP, "autocast=true", "autocast_dtype=float16")
    with pytest.raises(ConfigError, match="use autocast_dtype=bfloat16"):
        LoopSettings.from_config(cfg)


@pytest.mark.slow  # two more 2-rank runs
@pytest.mark.timeout(300)
def test_accumulation_and_clipping_on_sharded_gradients_equal_ddp(tmp_path: Path) -> None:
    """Two micro-batches per update (the first one's reduce-scatter held back) and a clip norm
    low enough to clip every update: the norm over all shards is the norm DDP computes."""
    args = [*EXAMPLE, "optim.grad_accumulation=2", "optim.max_norm=0.05"]
    first, _ = run_baton(tmp_path, "fsdp", [*args, FSDP], world=2)
    ddp, _ = run_baton(tmp_path, "ddp", args, world=2)
    assert_same_model(first["weights"]["model"], ddp["weights"]["model"])
    fsdp_history, ddp_history = (xp_folder(tmp_path, name) / "history.jsonl" for name in ("fsdp", "ddp"))
    import json

    for ours, theirs in zip(fsdp_history.read_text().splitlines(), ddp_history.read_text().splitlines(), strict=True):
        assert json.loads(ours)["train"]["grad_norm"] == pytest.approx(json.loads(theirs)["train"]["grad_norm"], rel=1e-4)


@pytest.mark.timeout(300)
@pytest.mark.slow  # reading a sharded XP whole without a process group is the export test's, in the fast suite
@pytest.mark.parametrize("world", [1, 2])
def test_continue_from_a_sharded_xp_loads_its_weights_on_any_world_size(fsdp_example, world: int) -> None:
    """A new XP (`optim.epochs=0`: nothing trained after loading) continuing from the 2-rank
    FSDP XP holds its best weights, on one process (whole) and on 2 FSDP ranks (shards)."""
    from baton.checkpoint import exported_weights

    tmp, _ = fsdp_example
    source = xp_folder(tmp, "fsdp")
    ranks = run_baton(tmp, f"continued{world}", [*EXAMPLE, FSDP, "optim.epochs=0", f"continue_from={source}"], world=world)
    best = exported_weights(source, "best")
    for rank in ranks:
        assert_same_model(rank["weights"]["model"], best, exact=True)


@pytest.mark.slow  # a codec XP, then two 2-rank LM runs
@pytest.mark.timeout(600)
def test_the_lm_with_its_decoder_layers_as_units_trains_equal_to_ddp(tmp_path: Path, synth_cache: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`lm/fsdp`'s sharding (one unit per DecoderLayer) on the CPU-sized LM: its generate stage
    calls `model.generate` (not the forward) on gathered weights."""
    from tests.solver.test_ddp_parity import COMPRESSION, LM

    monkeypatch.setenv("BATON_DATA_DIR", str(synth_cache))
    run_baton(tmp_path, "codec", [*COMPRESSION, "model.ratios=[8,5,4]"], world=1)
    (codec,) = (tmp_path / "codec" / "xps" / "xps").iterdir()
    args = [*LM, f"compression_model_checkpoint={codec}"]
    first, second = run_baton(tmp_path, "fsdp", [*args, FSDP, "distributed.fsdp.blocks=[DecoderLayer]"], world=2)
    ddp, _ = run_baton(tmp_path, "ddp", args, world=2)
    assert first["wrapped"] == {"model": "FSDPCodesLM"}
    assert_same_model(first["weights"]["model"], second["weights"]["model"], exact=True)
    assert_same_model(first["weights"]["model"], ddp["weights"]["model"], atol=1e-4)
    assert len(list(xp_folder(tmp_path, "fsdp").glob("samples/1/*.wav"))) == 2


@pytest.mark.slow  # the ranks started by hand are the fast suite's; -d's own launch is tested for DDP
@pytest.mark.timeout(300)
def test_baton_run_d_trains_the_example_under_fsdp_equal_to_the_ranks_started_by_hand(fsdp_example) -> None:
    """`baton run -d --nproc 2 ... distributed.strategy=fsdp`: torch.distributed.run starts the
    ranks; the model is the one of the ranks started by hand (bit for bit: same world size)."""
    tmp, (by_hand, _) = fsdp_example
    dump = tmp / "launched" / "dumps"
    done = subprocess.run(
        [sys.executable, "-m", "tests.solver.cli_rank_dump", str(dump), "run", "-d", "--nproc", "2", *EXAMPLE, FSDP,
         "logging.progress=false"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "BATON_XP_DIR": str(tmp / "launched" / "xps")},
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "baton: 2 processes for XP" in done.stdout
    launched = torch.load(dump / "rank0.pt", weights_only=True)
    assert launched["wrapped"] == {"model": "FSDPRegressionNet"}
    assert_same_model(launched["weights"]["model"], by_hand["weights"]["model"], exact=True)


@pytest.mark.slow  # two more 2-rank runs
@pytest.mark.timeout(300)
def test_bf16_autocast_runs_fsdp_s_mixed_precision_policy_equal_to_ddp_under_autocast(tmp_path: Path) -> None:
    """`autocast=true`: FSDP gathers bf16 parameters and reduces fp32 gradients; DDP casts the
    fp32 weights to bf16 inside autocast. The same computation: on 2 CPU ranks, equal weights."""
    args = [*EXAMPLE, "autocast=true", "autocast_dtype=bfloat16"]
    first, _ = run_baton(tmp_path, "fsdp", [*args, FSDP], world=2)
    ddp, _ = run_baton(tmp_path, "ddp", args, world=2)
    assert all(v.dtype == torch.float32 for v in first["weights"]["model"].values())  # fp32 master weights
    assert_same_model(first["weights"]["model"], ddp["weights"]["model"])
