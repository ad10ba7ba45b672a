"""`baton run`: resume, replay with -f, --clear, refusals; run as a user would."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from baton.__main__ import main
from baton.xp import status as st
from baton.xp.folder import XPFolder, all_xps
from baton.xp.lock import read_owner
from tests.xp.conftest import QUICK, baton_cli


def only_xp(root: Path) -> XPFolder:
    (xp,) = all_xps(root)
    return xp


def test_run_writes_the_xp_folder(clean_env: Path):
    assert main(["run", *QUICK, "optim.epochs=1"]) == 0
    xp = only_xp(clean_env)
    assert xp.argv() == [*QUICK, "optim.epochs=1"]
    names = {p.name for p in xp.path.iterdir()}
    assert {"config.yaml", "env.log", "history.jsonl", "checkpoint.th", "solver.log"} <= names
    assert xp.config().xp.sig == xp.sig
    env_log = (xp.path / "env.log").read_text()
    for field in ("python:", "torch:", "cuda:", "host:", "baton:"):
        assert field in env_log
    assert st.xp_status(xp) == st.DONE and len(xp.history()) == 1


def test_run_twice_finds_the_same_xp_done(clean_env: Path, capsys: pytest.CaptureFixture):
    assert main(["run", *QUICK, "optim.epochs=1"]) == 0
    xp = only_xp(clean_env)
    checkpoint = (xp.path / "checkpoint_1.th").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["run", "optim.epochs=1", *reversed(QUICK)]) == 0
    out = capsys.readouterr().out
    assert only_xp(clean_env).sig == xp.sig
    assert f"baton: XP {xp.sig} is done (1 epochs); --clear to start it again" in out
    assert f"baton: XP {xp.sig} (" not in out  # no start header: nothing started
    assert len(xp.history()) == 1  # nothing retrained, no data or model built
    assert (xp.path / "checkpoint_1.th").stat().st_mtime_ns == checkpoint
    assert "resuming" not in (xp.path / "solver.log").read_text()
    assert (xp.path / "env.log").read_text().count("=== ") == 1


def test_run_again_resumes_a_killed_xp(clean_env: Path):
    assert main(["run", *QUICK, "optim.epochs=1"]) == 0
    xp = only_xp(clean_env)
    st.write_exit(xp, st.KILLED, "stopped by SIGTERM during epoch 1")  # as a preemption leaves it
    assert main(["run", *QUICK, "optim.epochs=1"]) == 0
    assert "resuming" in (xp.path / "solver.log").read_text()
    assert st.xp_status(xp) == st.DONE and (xp.path / "env.log").read_text().count("=== ") == 2


def test_from_sig_adds_overrides_under_a_new_sig(clean_env: Path, capsys: pytest.CaptureFixture):
    assert main(["run", *QUICK, "optim.epochs=1"]) == 0
    first = only_xp(clean_env)
    assert main(["run", "-f", first.sig, "optim.lr=0.01", "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert "optim.lr=0.01" in out and "(not created)" in out
    assert len(all_xps(clean_env)) == 1  # a dry run writes nothing
    assert main(["run", "-f", first.sig, "optim.lr=0.01"]) == 0
    capsys.readouterr()
    (second,) = [xp for xp in all_xps(clean_env) if xp.sig != first.sig]
    assert second.argv() == [*QUICK, "optim.epochs=1", "optim.lr=0.01"]
    # Rightmost wins, and the stored list keeps one value per key.
    assert main(["run", "-f", second.sig, "optim.lr=3e-3", "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert f"sig:    {first.sig}" in out  # back to the example's own lr: no delta, first sig


def test_clear_starts_fresh(clean_env: Path):
    assert main(["run", *QUICK, "optim.epochs=1"]) == 0
    xp = only_xp(clean_env)
    (xp.path / "stale_file").write_text("x")
    assert main(["run", "--clear", *QUICK, "optim.epochs=1"]) == 0
    assert not (xp.path / "stale_file").exists()
    assert "resuming" not in (xp.path / "solver.log").read_text()
    assert (xp.path / "env.log").read_text().count("=== ") == 1
    assert len(xp.history()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "solver=example", "optim.lrr=1"], "unknown config key 'optim.lrr' (did you mean 'optim.lr'?)"),
        (["run", "solver=exmple"], "unknown option 'exmple' for config group 'solver'"),
        (["run", "solver=example", "optim.lr"], "malformed override 'optim.lr'"),
        (["run", "-f", "deadbeef"], "unknown sig 'deadbeef'"),
        (["run", "solver=example", "label=//reference/x"], "no reference dir is set"),
        (["run", "-d", "solver=example"], "give --nproc N to start N CPU processes (gloo)"),
        (["run"], "no solver chosen"),
        (["info", "-f", "deadbeef"], "unknown sig 'deadbeef'"),
        (["export", "deadbeef", "-o", "w.pt"], "unknown sig 'deadbeef'"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(
    args: list[str], message: str, clean_env: Path, capsys: pytest.CaptureFixture
):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1
    assert not clean_env.exists()


def test_user_error_from_a_real_process(clean_env: Path):
    result = baton_cli("run", "solver=example", "optim.lrr=1")
    assert result.returncode == 2
    assert result.stderr == (
        "error: unknown config key 'optim.lrr' (did you mean 'optim.lr'?); "
        "add a new key with +optim.lrr=1\n"
    )
    debug = baton_cli("run", "--debug", "solver=example", "optim.lrr=1")
    assert debug.returncode == 2 and "Traceback" in debug.stderr


@pytest.mark.slow
def test_two_concurrent_runs_one_refuses(wait_project: Path, clean_env: Path, tmp_path: Path):
    import subprocess
    import sys

    release = tmp_path / "release"
    args = ["run", "--config-dir", "conf", "solver=wait", f"task.release={release}"]
    first = subprocess.Popen(
        [sys.executable, "-m", "baton", *args],
        cwd=wait_project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            xps = all_xps(clean_env)
            if xps and read_owner(xps[0].path) and len(xps[0].history()) == 2:
                break
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        xp = only_xp(clean_env)
        assert st.xp_status(xp) == st.RUNNING
        second = baton_cli(*args, cwd=wait_project)
        assert second.returncode == 2
        assert f"XP {xp.sig} is already running (pid {first.pid} on " in second.stderr
    finally:
        release.write_text("go")
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert len(xp.history()) == 2 and st.xp_status(xp) == st.DONE


def test_a_failing_solver_is_recorded(wait_project: Path, clean_env: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(wait_project))
    with pytest.raises(RuntimeError, match="boom"):
        main(["run", "--config-dir", str(wait_project / "conf"), "solver=wait", "task.fail=true"])
    xp = only_xp(clean_env)
    assert st.xp_status(xp) == st.FAILED
    assert json.loads((xp.path / ".exit.json").read_text())["message"] == "RuntimeError: boom"


def test_a_config_error_before_training_leaves_the_xps_status(clean_env: Path) -> None:
    """`device` is not in the signature: `device=cuda` on a CPU machine names the demo's XP. Done,
    it has nothing to run; killed, building the solver fails, which must not mark the XP failed
    or rewrite its config."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: device=cuda is no error here")
    assert baton_cli("run", *QUICK).returncode == 0
    (folder,) = clean_env.glob("xps/*")
    config = (folder / "config.yaml").read_text()
    finished = baton_cli("run", *QUICK, "device=cuda")  # done: nothing is built, nothing fails
    assert finished.returncode == 0 and "is done" in finished.stdout
    st.write_exit(XPFolder(folder), st.KILLED, "stopped by SIGTERM during epoch 1")  # resumable
    refused = baton_cli("run", *QUICK, "device=cuda")
    assert refused.returncode == 2 and "CUDA is not available" in refused.stderr
    assert json.loads((folder / ".exit.json").read_text())["status"] == "killed"
    assert (folder / "config.yaml").read_text() == config


def test_a_reference_to_no_xp_is_refused_before_any_folder_is_made(clean_env: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", *QUICK, "continue_from=//sig/00000000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: continue_from=//sig/00000000: there is no XP 00000000 under ")
    assert len(err.strip().splitlines()) == 1
    assert not list(clean_env.glob("xps/*"))  # no folder made, none marked failed


def test_dry_run_makes_every_check_a_run_makes_and_no_xp(clean_env: Path, capsys: pytest.CaptureFixture) -> None:
    """A broken steps override: `--dry_run` refuses it with the real run's line (rc 2), and
    neither leaves an XP folder behind."""
    broken = ["solver=gan/debug", "+steps.generator.losses.mel.wieght=45"]
    assert main(["run", *broken, "--dry_run"]) == 2
    dry = capsys.readouterr().err
    assert "unknown option 'wieght' (did you mean 'weight'?)" in dry and len(dry.strip().splitlines()) == 1
    assert main(["run", *broken]) == 2
    assert capsys.readouterr().err == dry
    assert not list(clean_env.glob("xps/*"))


def test_a_missing_manifest_is_refused_before_the_xp_is_made(clean_env: Path, capsys: pytest.CaptureFixture) -> None:
    missing = clean_env / "data" / "train.jsonl"
    args = ["solver=compression/debug", f"dataset.train.manifest={missing}"]
    assert main(["run", *args, "--dry_run"]) == 2
    dry = capsys.readouterr().err
    assert f"dataset.train.manifest: {missing} does not exist; create it with `baton data manifest DIR -o {missing}`" in dry
    assert len(dry.strip().splitlines()) == 1
    assert main(["run", *args]) == 2
    assert capsys.readouterr().err == dry
    assert not list(clean_env.glob("xps/*"))
