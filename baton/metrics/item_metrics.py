"""The metrics an evaluation names (`evaluate.metrics: [si_snr, mel, visqol, pesq, stoi]`), behind
one interface: a batch of estimates and references with their lengths and sample rate in, one
score per item out.

Two kinds share it. SI-SNR and mel distance run in torch on the batch's device, on every item.
The others wrap a package that ships its model in its wheel (ViSQOL, PESQ, STOI, DNSMOS, a
speaker encoder; catalog.py holds baton's own): they score one item at a time on CPU, at the sample rate
their package needs (each item is mixed to mono, trimmed to its length and resampled first),
which is why an evaluation can cap how many items they score (`MetricSuite`). Their package is
an optional extra of baton; naming a metric whose package is missing is one line naming it.

A project adds its own with `@register_metric("name")` on an `ItemMetric` subclass.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..data.audio import resample
from ..errors import ConfigError, DataError
from ..registry import Registry
from .audio import _as_bct

METRICS = Registry("metric", ("baton.metrics.catalog",), noun="name")
register_metric = METRICS.register


class Unscorable(DataError):
    """An item this metric cannot score (PESQ finds no utterance in it, it is too short for
    ViSQOL): one line naming the metric, the reason and the fix. Scored directly, the error
    stops the caller; a MetricSuite leaves the item out of that metric's mean and says how many."""


class ItemMetric:
    """One score per item. Subclasses of a package set `module`, `extra`, `sample_rate` and
    `score`; torch ones set `costly = False` and override `__call__`.

    Attributes:
        name: the name it is registered and reported under.
        sample_rate: the rate `score` receives its arrays at; None: any (the input's).
        module: the package it imports (checked when built), with `extra`, baton's extra that
            installs it (`pip install 'baton[extra]'`).
        costly: scored item by item on CPU: capped by `evaluate.metrics_items`, and may run in
            worker processes (`evaluate.metrics_workers`).
        uses_reference: False for a reference-free score (DNSMOS), which reads the estimate only.
        higher_is_better: the direction of a better score.
    """

    name: str = ""
    sample_rate: int | None = None
    module: str | None = None
    extra: str | None = None
    costly: bool = True
    uses_reference: bool = True
    higher_is_better: bool = True

    def __init__(self) -> None:
        self._backend: Any = None  # the package's model, loaded on first use in each process

    def check_installed(self) -> None:
        """Raises ConfigError, one line naming the extra, when the package cannot be imported."""
        if self.module is None:
            return
        try:
            importlib.import_module(self.module)
        except ImportError as exc:
            raise ConfigError(
                f"metric '{self.name}' needs the package '{self.module}', which cannot be imported "
                f"({exc}); install it with: pip install 'baton[{self.extra}]'"
            ) from None

    def __call__(self, estimate: torch.Tensor, reference: torch.Tensor, lengths: torch.Tensor | None,
                 sample_rate: int) -> torch.Tensor:
        """Scores of a batch ([batch, time] or [batch, channels, time]), as float64 [batch]."""
        pairs = self.items(estimate, reference, lengths, sample_rate)
        rate = self.sample_rate or sample_rate
        return torch.tensor([self.score(est, ref, rate) for est, ref in pairs], dtype=torch.float64)

    def items(self, estimate: torch.Tensor, reference: torch.Tensor, lengths: torch.Tensor | None,
              sample_rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each item as the mono float64 arrays `score` takes: trimmed to its length (padding is
        not signal) and resampled to `self.sample_rate`."""
        est, ref = _as_bct(estimate), _as_bct(reference)
        if est.shape != ref.shape:
            raise ValueError(f"metric '{self.name}': estimate {tuple(est.shape)} and reference "
                             f"{tuple(ref.shape)} differ in shape")
        target = self.sample_rate or sample_rate
        pairs = []
        for i in range(est.shape[0]):
            length = est.shape[-1] if lengths is None else int(lengths[i])
            pair = [resample(wav[i, :, :length].float().mean(0).cpu(), sample_rate, target)
                    for wav in (est, ref)]
            pairs.append((pair[0].double().numpy(), pair[1].double().numpy()))
        return pairs

    def score(self, estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
        """The score of one item, mono arrays at `sample_rate`."""
        raise NotImplementedError

    @property
    def backend(self) -> Any:
        if self._backend is None:
            self._backend = self.load()
        return self._backend

    def load(self) -> Any:
        """The package's scorer (its model read from the wheel): built once per process."""
        return None

    def __getstate__(self) -> dict[str, Any]:
        # Sent to worker processes without the loaded model: each loads its own.
        return {**self.__dict__, "_backend": None}


def build_metric(name: str, options: Mapping[str, Any] | None = None, where: str = "evaluate.metrics") -> ItemMetric:
    """The metric registered as `name`, built with `options`, its package checked.

    Raises:
        ConfigError: an unknown name (with a did-you-mean), a bad option, or a missing package
            (naming the extra that installs it).
    """
    metric = METRICS.build(str(name), dict(options or {}), where)
    if not isinstance(metric, ItemMetric):
        raise ConfigError(f"{where}: metric '{name}' is a {type(metric).__name__}, not an ItemMetric")
    metric.name = str(name)
    metric.check_installed()
    return metric


def metric_names() -> list[str]:
    """Every registered metric name (baton's and a project's)."""
    return METRICS.names()
