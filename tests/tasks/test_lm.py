"""The audio language model task on a real (tiny) codec XP: the token cache, conditioning with
and without attributes, generation, and exact resume. The whole chain at debug size is
`test_lm_debug_grid_runs_the_chain` (slow)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import baton
from baton.conditioners import ConditioningAttributes, nullified
from baton.config import compose
from baton.tasks.lm import CroppedTokens, LMSolver
from tests.solver.test_resume import assert_same

ROOT = Path(__file__).resolve().parents[2]
CODEC = ["solver=compression/debug", "model.ratios=[8,5,4]", "optim.epochs=1", "optim.updates_per_epoch=4",
         "dataset.batch_size=8", "dataset.segment_duration=0.5", "evaluate.n_q=[4]", "generate.num_samples=1",
         "logging.tensorboard=false", "num_threads=1"]
LM = ["solver=lm/debug", "optim.epochs=2", "optim.updates_per_epoch=3", "dataset.batch_size=16",
      "dataset.valid.num_samples=16", "lm.dim=32", "lm.layers=1", "generate.num_samples=2",
      "evaluate.num_samples=8", "logging.tensorboard=false", "num_threads=1",
      "tokens.cache=true", "dataset.train.random_crop=false"]


@pytest.fixture(scope="module")
def trained_codec(synth_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny codec XP for the whole module: the LMs read it, none changes it."""
    root = tmp_path_factory.mktemp("codec")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BATON_DATA_DIR", str(synth_cache))
        patch.setenv("BATON_XP_DIR", str(root))
        return Path(baton.run(CODEC).folder)


@pytest.fixture
def codec(env: Path, trained_codec: Path) -> str:
    """The module's codec XP, copied into this test's XP root (where `//sig/SIG` looks)."""
    shutil.copytree(trained_codec, env / "xps" / "xps" / trained_codec.name)
    return trained_codec.name


def cache_files(env: Path) -> list[Path]:
    return sorted((env / "xps" / "token_cache").rglob("*.pt"))


def test_the_token_cache_is_written_once_per_codec(env: Path, codec: str) -> None:
    result = baton.run([*LM, f"compression_model_checkpoint=//sig/{codec}"])
    assert result.status == "done"
    files = cache_files(env)
    assert [f.parent.name for f in files] == [f"{codec}-best"] * 2 and {f.name.split("-")[0] for f in files} == {"train", "valid"}
    stored = torch.load(files[0], weights_only=True)
    assert stored["codes"].shape[1:] == (4, 50) and len(stored["codes"]) == len(stored["labels"])
    written = [f.stat().st_mtime_ns for f in files]
    baton.run([*LM, f"compression_model_checkpoint=//sig/{codec}", "optim.lr=1e-3"])  # another LM, same codec
    assert [f.stat().st_mtime_ns for f in cache_files(env)] == written, "the cache is reused"

    other = baton.run([*CODEC, "seed=1"]).sig  # a different codec: new tokens
    baton.run([*LM, f"compression_model_checkpoint=//sig/{other}"])
    rebuilt = [f for f in cache_files(env) if f.parent.name == f"{other}-best"]
    assert len(rebuilt) == 2 and len(cache_files(env)) == 4
    assert not torch.equal(torch.load(rebuilt[0], weights_only=True)["codes"], stored["codes"])


def test_random_crops_come_from_a_cache_of_whole_files(env: Path, codec: str) -> None:
    """`tokens.cache=true` where the split crops at random: each file is encoded whole once,
    and every epoch takes a new window of its codes, drawn from (seed, epoch, index)."""
    assert baton.run([*LM, f"compression_model_checkpoint=//sig/{codec}", "dataset.train.random_crop=true"]).status == "done"
    (train,) = [f for f in cache_files(env) if f.name.startswith("train-")]
    stored = torch.load(train, weights_only=True)
    lengths = {codes.shape[-1] for codes in stored["files"]}
    assert len(stored["files"]) == len(stored["labels"]) == 384 and min(lengths) >= 50 and len(lengths) > 10
    crops = CroppedTokens(stored["files"], stored["labels"], frames=50, seed=0)
    first = [crops[i]["codes"] for i in range(8)]
    for index, window in enumerate(first):
        whole = stored["files"][index].long()
        assert any(torch.equal(whole[:, o:o + 50], window) for o in range(whole.shape[-1] - 49))
    crops.set_epoch(1)
    assert any(not torch.equal(crops[i]["codes"], first[i]) for i in range(8)), "a new crop each epoch"
    crops.set_epoch(0)
    assert all(torch.equal(crops[i]["codes"], first[i]) for i in range(8)), "the same crops for the same epoch"


def test_conditioned_and_unconditional_generation(env: Path, codec: str) -> None:
    cfg = compose([*LM, f"compression_model_checkpoint=//sig/{codec}"])
    with LMSolver(cfg) as solver:
        solver.run()
        model = solver.model.eval()
        labels = ["chirp_up", "pulses"]
        attributes = [ConditioningAttributes(text={"description": x}, categorical={"label": x}) for x in labels]
        for attrs, scale in [(attributes, 1.0), (attributes, 3.0), (nullified(attributes), 1.0)]:
            codes = model.generate(attrs, 10, top_k=20, cfg_scale=scale, generator=torch.Generator().manual_seed(0))
            assert codes.shape == (2, 4, 10) and 0 <= int(codes.min()) and int(codes.max()) < model.card
        unconditional = model.generate(nullified(attributes), 10, temperature=0)
        assert torch.equal(unconditional[0], unconditional[1]), "no attribute: the same greedy sample for both"
        conditioned = model.generate(attributes, 10, temperature=0)
        assert not torch.equal(conditioned[0], conditioned[1]) or not torch.equal(conditioned[0], unconditional[0])
    samples = sorted((Path(cfg.xp.folder) / "samples" / "2").glob("*.wav"))
    assert [p.name for p in samples] == ["00_note_bright_cfg3.wav", "01_note_mellow_cfg3.wav"]


def test_an_lm_of_another_codec_type_is_refused(env: Path) -> None:
    example = baton.run(["solver=example", "task.num_train=64", "task.num_valid=16", "optim.epochs=1"]).sig
    cfg = compose([*LM, f"compression_model_checkpoint=//sig/{example}"])
    with pytest.raises(baton.errors.ConfigError, match=rf"compression_model_checkpoint=//sig/{example} is XP {example}, "
                                                       r"trained by solver 'example'; this needs an XP of CompressionSolver"):
        LMSolver(cfg)


def run_lm(codec: str, label: str, cache: bool, kill_after_checkpoint: bool = False) -> Path:
    """`baton run` of a short LM XP on random crops, encoded on the fly or cropped from a token
    cache of whole files; killed by SIGKILL once its first mid-epoch checkpoint exists."""
    args = [*LM, f"compression_model_checkpoint=//sig/{codec}", "optim.updates_per_epoch=6",
            "checkpoint.every_updates=2", "generate.every=0", "evaluate.every=0", f"label={label}",
            f"tokens.cache={str(cache).lower()}", "dataset.train.random_crop=true"]
    proc = subprocess.Popen([sys.executable, "-m", "baton", "run", *args], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    folder = Path(compose(args).xp.folder)
    if kill_after_checkpoint:
        deadline = time.monotonic() + 120
        while not (folder / "checkpoint.th").exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        return folder
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode()[-3000:]
    return folder


def final(folder: Path) -> dict:
    data = torch.load(folder / "checkpoint.th", weights_only=True)
    return {"state": data["state"]["registered"], "history": (folder / "history.jsonl").read_bytes()}


# Encoded on the fly, the same resume with the codec in the loop: in `make test-slow`.
@pytest.mark.parametrize("cache", [pytest.param(False, marks=pytest.mark.slow), True],
                         ids=["on the fly", "cropped from the cache"])
def test_an_lm_killed_mid_epoch_resumes_bit_exact(env: Path, codec: str, cache: bool) -> None:
    """Two XPs that differ only by their label train alike; one is killed and run again."""
    straight = final(run_lm(codec, "straight", cache))
    assert len(straight["history"].decode().splitlines()) == 2
    folder = run_lm(codec, "killed", cache, kill_after_checkpoint=True)
    run_lm(codec, "killed", cache)
    assert_same(final(folder), straight)
