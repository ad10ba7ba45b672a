"""`MetricSuite`: the metrics an evaluation lists, scored batch by batch and averaged over every
item of every rank once.

The cheap torch metrics (SI-SNR, mel) score every item. The package-backed ones score the first
`max_items` items of the evaluation order over all ranks (`evaluate.metrics_items`): ViSQOL or
DNSMOS take 0.1 to 2 s of CPU per item, and a cap keeps an evaluation's cost fixed as the test
set grows. Given a pool (`worker_pool(n)`, `evaluate.metrics_workers`), those items are scored
in its worker processes while the caller goes on with its next batches (the model's forward
passes, on the GPU when there is one), and `result()` waits for them.

Which items are a rank's: batches come from an evaluation loader, whose sampler deals items
round-robin (rank r holds positions r, r + W, r + 2W, ...), so this rank's n-th item is global
position n * W + r: keeping positions below `max_items` scores exactly that many items over
all ranks, each once, whatever the world size (the same rule as SampleWriter).

An item a metric cannot score (`Unscorable`: PESQ finds no utterance in a noise burst) is left
out of that metric's mean, and `result()` logs how many were, over all ranks, and why.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any

import torch

from .. import distrib
from ..errors import ConfigError
from .averager import Averager
from .item_metrics import ItemMetric, Unscorable, build_metric

logger = logging.getLogger(__name__)


class MetricSuite:
    """Scores of named metrics over an evaluation pass.

    Args:
        names: metric names (`evaluate.metrics`), each registered (catalog.py or a project's).
        max_items: how many items, over all ranks, the costly metrics score; None: all.
        pool: where the costly metrics are scored (`worker_pool`); None: in this process. The
            caller owns it (several suites may share one) and shuts it down.
        options: per metric name, keyword options of its constructor (e.g. mel's scales).
        where: the config key named in errors.
        label: what this suite scores, in its warnings (the codec task: "at 8 kbps").

    Raises:
        ConfigError: an unknown metric (did you mean), a missing package (its extra), a
            repeated name or a bad cap.
    """

    def __init__(self, names: Sequence[str], *, max_items: int | None = None, pool: Executor | None = None,
                 options: Mapping[str, Mapping[str, Any]] | None = None, where: str = "evaluate.metrics",
                 label: str = "") -> None:
        names = [str(n) for n in names]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"{where}: {', '.join(repeated)} listed twice; list each metric once")
        if max_items is not None and int(max_items) < 1:
            raise ConfigError(f"{where}: the cap on items scored (evaluate.metrics_items, max_items) is "
                              f"{max_items}; use a positive count, or null for all")
        options = dict(options or {})
        self.metrics: list[ItemMetric] = [build_metric(n, options.get(n), where) for n in names]
        self.max_items = None if max_items is None else int(max_items)
        self.pool = pool
        self.label = label
        self.rank, self.world = distrib.rank(), distrib.world_size()
        self.seen = 0  # items of this rank so far
        self.average = Averager()
        self._pending: list[tuple[str, list[Future[float | str]]]] = []
        self.unscored: dict[str, list[str]] = {name: [] for name in self.names}  # reasons, this rank

    @property
    def names(self) -> list[str]:
        return [metric.name for metric in self.metrics]

    def update(self, estimate: torch.Tensor, reference: torch.Tensor, lengths: torch.Tensor | None,
               sample_rate: int) -> None:
        """Score one batch of this rank ([batch, time] or [batch, channels, time], lengths in
        samples or None when nothing is padded)."""
        count = int(estimate.shape[0])
        positions = [(self.seen + i) * self.world + self.rank for i in range(count)]
        self.seen += count
        kept = [i for i, position in enumerate(positions) if self.max_items is None or position < self.max_items]
        for metric in self.metrics:
            if not metric.costly:
                values = metric(estimate, reference, lengths, sample_rate)
                self.average.update({metric.name: values.mean()}, count=len(values))
            elif kept:
                index = torch.tensor(kept, device=estimate.device)
                pairs = metric.items(estimate[index], reference[index],
                                     None if lengths is None else lengths[index.to(lengths.device)], sample_rate)
                rate = metric.sample_rate or sample_rate
                if self.pool is not None:
                    self._pending.append((metric.name, [self.pool.submit(score_item, metric, e, r, rate)
                                                        for e, r in pairs]))
                else:
                    self._add(metric.name, [score_item(metric, e, r, rate) for e, r in pairs])

    def result(self) -> dict[str, float]:
        """Each metric's mean over the items scored on all ranks (collective: every rank calls
        it), once the pool's scores are in."""
        pending, self._pending = self._pending, []
        for name, futures in pending:
            self._add(name, [future.result() for future in futures])
        for name in self.names:  # a rank past the cap has no score: it still takes part
            self.average.update({name: 0.0}, count=0)
        reduced = self.average.reduced_state()
        self._report_unscored(reduced["counts"])
        return {name: reduced["sums"][name] / reduced["counts"][name]
                for name in self.names if reduced["counts"][name] > 0}

    def _add(self, name: str, results: list[float | str]) -> None:
        scores = [r for r in results if isinstance(r, float)]
        self.unscored[name].extend(r for r in results if isinstance(r, str))
        if scores:
            self.average.update({name: sum(scores) / len(scores)}, count=len(scores))

    def _report_unscored(self, counts: Mapping[str, float]) -> None:
        """One warning per metric that left items out (collective: the counts of all ranks)."""
        totals = distrib.all_reduce_sum([float(len(self.unscored[name])) for name in self.names])
        for name, left_out in zip(self.names, totals, strict=True):
            if left_out:
                example = self.unscored[name][0] if self.unscored[name] else "see the other ranks' logs"
                logger.warning("%s%s: %d of %d items could not be scored and are left out of its mean; "
                               "the first: %s", name, f" {self.label}" if self.label else "", left_out,
                               left_out + counts[name], example)
        self.unscored = {name: [] for name in self.names}


def score_item(metric: ItemMetric, estimate: Any, reference: Any, sample_rate: int) -> float | str:
    """The item's score, or why the metric cannot score it (a picklable job for a worker)."""
    try:
        return metric.score(estimate, reference, sample_rate)
    except Unscorable as exc:
        return str(exc)


def worker_pool(workers: int, where: str = "evaluate.metrics_workers") -> ProcessPoolExecutor | None:
    """`workers` processes for the costly metrics (None for 0: score in the caller's process).
    Each loads its own copy of a metric's model on first use; shut it down when done.

    Raises:
        ConfigError: a negative count.
    """
    if int(workers) < 0:
        raise ConfigError(f"{where}={workers}: use 0 (score in the solver's process) or a number of processes")
    if not workers:
        return None
    import multiprocessing

    # spawn, not fork: a fork of a process holding CUDA or gloo state is unsafe.
    return ProcessPoolExecutor(int(workers), mp_context=multiprocessing.get_context("spawn"))
