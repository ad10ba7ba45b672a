"""`baton.load_model(SIG)`: the trained model, rebuilt from the XP's config.yaml, gives what the
XP's own generate stage wrote (real runs, real files)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import soundfile
import torch

import baton
from baton.__main__ import main
from baton.errors import ConfigError, UserError
from baton.tasks.example import RegressionNet
from baton.xp.folder import all_xps
from tests.xp.conftest import QUICK, baton_cli


def last_samples(folder: Path) -> Path:
    return max((folder / "samples").iterdir(), key=lambda p: int(p.name))


@pytest.fixture
def example_xp(clean_env: Path) -> Path:
    """A finished example XP of 3 epochs, generate every epoch; its folder."""
    assert main(["run", *QUICK, "optim.epochs=3"]) == 0
    (xp,) = all_xps(clean_env)
    return xp.path


def test_loaded_model_reproduces_the_generate_stage(example_xp: Path) -> None:
    model = baton.load_model(example_xp.name)
    assert isinstance(model, RegressionNet) and not model.training
    rows = json.loads((last_samples(example_xp) / "predictions.json").read_text())
    assert last_samples(example_xp).name == "3"
    with torch.no_grad():
        prediction = model(torch.tensor([row["input"] for row in rows]))
    torch.testing.assert_close(prediction, torch.tensor([row["prediction"] for row in rows]))
    # The other weights are other models; the prefix of a sig, the folder and a checkpoint file
    # find the same XP.
    ema, last = baton.load_model(example_xp.name, "ema"), baton.load_model(example_xp.name, which="last")
    assert not torch.equal(ema.state_dict()["net.0.weight"], last.state_dict()["net.0.weight"])
    for same in (example_xp.name[:5], str(example_xp), example_xp, example_xp / "checkpoint.th"):
        torch.testing.assert_close(baton.load_model(same).state_dict(), model.state_dict(), rtol=0, atol=0)
    kept = baton.load_model(example_xp / "checkpoint_2.th", "last")
    assert not torch.equal(kept.state_dict()["net.0.weight"], last.state_dict()["net.0.weight"])


def test_exported_weights_with_config_load_without_the_xp(example_xp: Path, tmp_path: Path) -> None:
    output = tmp_path / "shipped" / "model.pt"
    result = baton_cli("export", example_xp.name, "-o", str(output), "--source", "ema", "--with-config")
    assert result.returncode == 0, result.stderr
    assert f"wrote its config to {output.with_suffix('.yaml')}" in result.stdout
    assert output.with_suffix(".yaml").read_text() == (example_xp / "config.yaml").read_text()
    moved = tmp_path / "elsewhere"
    output.parent.rename(moved)  # no XP folder needed: the file and its model.yaml
    model = baton.load_model(moved / "model.pt")
    torch.testing.assert_close(model.state_dict(), baton.load_model(example_xp.name, "ema").state_dict())
    assert not model.training


def test_export_with_config_of_an_xp_that_never_ran_writes_nothing(clean_env: Path, tmp_path: Path, capsys) -> None:
    assert main(["grid", "example", "--init"]) == 0
    sig = all_xps(clean_env)[0].sig
    assert main(["export", sig, "-o", str(tmp_path / "m.pt"), "--with-config"]) == 2
    assert "no config.yaml" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


def test_a_solver_without_the_hook_is_one_line(wait_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's solver that never defined build_model_from_config: said in one line, before any
    weights are looked for (this one wrote none)."""
    result = baton_cli("run", "solver=wait", "--config-dir", str(wait_project / "conf"), cwd=wait_project)
    assert result.returncode == 0, result.stderr
    monkeypatch.syspath_prepend(str(wait_project))  # where `solver: waitsolver.WaitSolver` lives
    (xp,) = all_xps(Path(os.environ["BATON_XP_DIR"]))
    with pytest.raises(ConfigError, match=r"waitsolver.WaitSolver\) cannot rebuild its model: define the "
                       r"classmethod build_model_from_config\(cfg\)") as error:
        baton.load_model(xp.sig)
    assert "\n" not in str(error.value)


def test_wrong_names_are_one_line(example_xp: Path) -> None:
    with pytest.raises(UserError, match="unknown sig 'nosuchsig'"):
        baton.load_model("nosuchsig")
    with pytest.raises(UserError, match="does not exist"):
        baton.load_model(example_xp / "nowhere.th")
    with pytest.raises(UserError, match="unknown weights 'newest'"):
        baton.load_model(example_xp.name, "newest")


def test_weights_that_do_not_fit_the_config_are_one_line(example_xp: Path) -> None:
    config = example_xp / "config.yaml"
    config.write_text(config.read_text().replace("hidden: 64", "hidden: 32"))
    with pytest.raises(UserError, match="do not fit the model its config builds: size mismatch") as error:
        baton.load_model(example_xp.name)
    assert "\n" not in str(error.value)


COMPRESSION = ["solver=compression/debug", "optim.epochs=1", "optim.updates_per_epoch=4",
               "dataset.batch_size=4", "evaluate.n_q=[4]", "generate.num_samples=2",
               "logging.tensorboard=false", "num_threads=1"]


def test_loaded_codec_reproduces_the_written_reconstructions(
    clean_env: Path, synth_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omegaconf import OmegaConf

    from baton.data.builders import audio_dataset

    monkeypatch.setenv("BATON_DATA_DIR", str(synth_cache))
    assert main(["run", *COMPRESSION]) == 0
    (xp,) = all_xps(clean_env)
    model = baton.load_model(xp.sig)
    assert not model.training
    cfg = OmegaConf.load(xp.path / "config.yaml")
    dataset = audio_dataset(cfg.dataset, "generate", seed=int(cfg.seed))
    written = sorted((xp.path / "samples" / "1").glob("*_reconstructed.wav"))
    assert len(written) == 2
    for index, path in enumerate(written):
        item = dataset[index]
        with torch.no_grad():
            y = model(item.wav[None]).y[0, :, : item.length].clamp(-1, 1)
        wav, rate = soundfile.read(path, dtype="float32", always_2d=True)
        assert rate == model.sample_rate and wav.shape[0] == item.length and abs(wav).max() > 1e-2
        # PCM_16: within one quantization step (plus float noise).
        torch.testing.assert_close(y, torch.from_numpy(wav.T), rtol=0, atol=1.5 / 2**15)
