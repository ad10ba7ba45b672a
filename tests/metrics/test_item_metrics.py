"""The metric registry: names, one-line errors, and a project's own metric."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from baton.errors import ConfigError
from baton.metrics.item_metrics import ItemMetric, build_metric, metric_names, register_metric


def test_baton_lists_its_metrics() -> None:
    assert {"si_snr", "mel", "visqol", "visqol_speech", "pesq", "stoi", "dnsmos", "speaker_sim"} <= set(metric_names())


def test_an_unknown_name_is_one_line_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as caught:
        build_metric("pesk")
    message = str(caught.value)
    assert "\n" not in message
    assert "evaluate.metrics: unknown metric name 'pesk' (did you mean 'pesq'?)" in message


@pytest.mark.parametrize(("name", "module", "extra"), [
    ("pesq", "pesq", "pesq"), ("visqol", "visqol", "visqol"), ("stoi", "pystoi", "stoi"),
    ("dnsmos", "speechmos", "dnsmos"), ("speaker_sim", "resemblyzer", "speaker"),
])
def test_a_missing_package_is_one_line_naming_its_extra(monkeypatch: pytest.MonkeyPatch, name: str,
                                                         module: str, extra: str) -> None:
    for loaded in [m for m in sys.modules if m == module or m.startswith(f"{module}.")]:
        monkeypatch.delitem(sys.modules, loaded)
    monkeypatch.setitem(sys.modules, module, None)  # what an environment without it imports

    with pytest.raises(ConfigError) as caught:
        build_metric(name)

    message = str(caught.value)
    assert "\n" not in message
    assert f"metric '{name}' needs the package" in message
    assert message.endswith(f"pip install 'baton[{extra}]'")


def test_a_bad_option_names_the_metric() -> None:
    with pytest.raises(ConfigError, match=r"evaluate.metrics \(metric type 'mel'\): unknown option 'scale' \(did you mean 'scales'\?\)"):
        build_metric("mel", {"scale": [256]})


def test_a_projects_own_metric() -> None:
    @register_metric("peak_error")
    class PeakError(ItemMetric):
        """Largest absolute sample error, at 8 kHz (to show resampling)."""

        sample_rate = 8_000
        higher_is_better = False

        def score(self, estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
            assert sample_rate == 8_000 and estimate.dtype == np.float64
            return float(np.abs(estimate - reference).max())

    reference = torch.zeros(2, 16_000)
    estimate = reference.clone()
    estimate[1, 4_000:12_000] = 0.5
    scores = build_metric("peak_error")(estimate, reference, torch.tensor([16_000, 16_000]), 16_000)
    assert scores[0].item() == 0.0 and scores[1].item() == pytest.approx(0.5, abs=0.05)
    assert "peak_error" in metric_names()


def test_torch_metrics_score_every_item_on_the_device() -> None:
    from baton.metrics.audio import si_snr

    reference = torch.randn(3, 1, 8_000, generator=torch.Generator().manual_seed(0))
    estimate = reference + 0.1 * torch.randn(3, 1, 8_000, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([8_000, 6_000, 4_000])
    scores = build_metric("si_snr")(estimate, reference, lengths, 16_000)
    assert torch.allclose(scores, si_snr(estimate, reference, lengths).double())
    assert not build_metric("si_snr").costly and build_metric("pesq").costly
