"""MetricSuite: every item counted once over all ranks, the costly metrics capped, and the same
means from worker processes, from one process and from two gloo ranks."""

from __future__ import annotations

import json
from concurrent.futures import Executor
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, Dataset

from baton.data.sampler import ResumableSampler
from baton.errors import ConfigError
from baton.metrics.suite import MetricSuite, worker_pool

from .signals import voiced, with_noise

RATE = 16_000
NAMES = ["si_snr", "mel", "visqol", "visqol_speech", "pesq", "stoi", "speaker_sim"]


class NoisyPairs(Dataset):
    """Item i: a voiced clip of 1 to 1.5 times `seconds` (ViSQOL needs about 1 s) and that clip
    at an SNR of its own (estimate, reference, length)."""

    def __init__(self, count: int, seconds: float = 1.0) -> None:
        self.count, self.shortest = count, int(seconds * RATE)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        length = self.shortest + (i * 997) % (self.shortest // 2)
        reference = voiced(length / RATE, RATE, f0=100.0 + 7 * i, seed=i)
        return with_noise(reference, snr_db=float(i % 11) - 2, seed=i), reference, length


def collate(items: list[tuple[torch.Tensor, torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    longest = max(length for _, _, length in items)
    estimate, reference = torch.zeros(len(items), 1, longest), torch.zeros(len(items), 1, longest)
    for i, (est, ref, length) in enumerate(items):
        estimate[i, 0, :length], reference[i, 0, :length] = est, ref
    return estimate, reference, torch.tensor([length for _, _, length in items])


def evaluate(count: int, max_items: int | None, pool: Executor | None = None, names: list[str] = NAMES,
             rank: int = 0, world: int = 1, seconds: float = 1.0) -> dict[str, float]:
    """One evaluation pass as a task runs it: an evaluation sampler (each item on one rank),
    batches of 4, the suite fed every batch."""
    data = NoisyPairs(count, seconds)
    sampler = ResumableSampler(data, shuffle=True, seed=3, rank=rank, world_size=world, pad=False)
    suite = MetricSuite(names, max_items=max_items, pool=pool)
    for estimate, reference, lengths in DataLoader(data, batch_size=4, sampler=sampler, collate_fn=collate):
        suite.update(estimate, reference, lengths, RATE)
    return suite.result()


def scores_of(names: list[str], indices: list[int]) -> dict[str, float]:
    """Each metric's plain mean over the given items, scored one at a time."""
    data = NoisyPairs(max(indices) + 1)
    suite = MetricSuite(names)
    means = {}
    for metric in suite.metrics:
        values = [metric(est[None], ref[None], torch.tensor([n]), RATE).item()
                  for est, ref, n in (data[i] for i in indices)]
        means[metric.name] = sum(values) / len(values)
    return means


def test_the_cap_scores_the_first_items_of_the_evaluation_order() -> None:
    order = ResumableSampler(9, shuffle=True, seed=3, pad=False).order(0)
    got = evaluate(9, max_items=5, names=["si_snr", "pesq", "stoi"])

    assert got["pesq"] == pytest.approx(scores_of(["pesq"], order[:5])["pesq"], rel=1e-9)
    assert got["stoi"] == pytest.approx(scores_of(["stoi"], order[:5])["stoi"], rel=1e-9)
    assert got["si_snr"] == pytest.approx(scores_of(["si_snr"], order)["si_snr"], rel=1e-5)  # every item


def test_worker_processes_give_the_same_means() -> None:
    names = ["si_snr", "pesq", "stoi"]
    pool = worker_pool(1)
    assert pool is not None and worker_pool(0) is None
    try:
        in_workers = evaluate(6, max_items=None, pool=pool, names=names)
    finally:
        pool.shutdown()
    assert in_workers == pytest.approx(evaluate(6, max_items=None, names=names), rel=1e-12)


def test_bad_settings_are_one_line() -> None:
    with pytest.raises(ConfigError, match="pesq listed twice; list each metric once"):
        MetricSuite(["pesq", "stoi", "pesq"])
    with pytest.raises(ConfigError, match=r"the cap on items scored \(evaluate.metrics_items, max_items\) is 0; use a positive count"):
        MetricSuite(["pesq"], max_items=0)
    with pytest.raises(ConfigError, match=r"evaluate.metrics_workers=-1: use 0 \(score in the solver's process\)"):
        worker_pool(-1)


def _rank(rank: int, folder: str, names: list[str], seconds: float, caps: list[int | None]) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        results = [evaluate(33, cap, names=names, rank=rank, world=2, seconds=seconds) for cap in caps]
        (Path(folder) / f"rank{rank}.json").write_text(json.dumps(results))
    finally:
        dist.barrier()
        dist.destroy_process_group()


def check_two_ranks_against_one_process(folder: Path, names: list[str], seconds: float,
                                        caps: list[int | None]) -> list[dict[str, float]]:
    mp.spawn(_rank, args=(str(folder), names, seconds, caps), nprocs=2)
    one = [evaluate(33, cap, names=names, seconds=seconds) for cap in caps]

    for rank in range(2):
        got = json.loads((folder / f"rank{rank}.json").read_text())
        for cap, on_ranks, on_one in zip(caps, got, one, strict=True):
            assert sorted(on_ranks) == sorted(names)
            for name in names:
                assert on_ranks[name] == pytest.approx(on_one[name], rel=1e-6), (cap, name)
    return one


def test_two_gloo_ranks_with_33_items_give_the_means_of_one_process(tmp_path: Path) -> None:
    # pesq and stoi on the first 20 items of the order, si_snr and mel on all 33 (uneven shards)
    check_two_ranks_against_one_process(tmp_path, ["si_snr", "mel", "pesq", "stoi"], seconds=0.6, caps=[20])


@pytest.mark.slow  # every metric on 33 items, and on 20: a few minutes on 2 cores
def test_every_metric_on_two_gloo_ranks_gives_the_means_of_one_process(tmp_path: Path) -> None:
    names = [*NAMES, "dnsmos"]
    every_item, first_20 = check_two_ranks_against_one_process(tmp_path, names, seconds=1.0, caps=[None, 20])
    assert every_item["si_snr"] == first_20["si_snr"]  # the cap is for the costly metrics only
    assert every_item["pesq"] != pytest.approx(first_20["pesq"], rel=1e-3)


def test_an_item_a_metric_cannot_score_is_left_out_of_its_mean_and_said(caplog: pytest.LogCaptureFixture) -> None:
    speech = voiced(1.0, RATE)
    estimate = torch.stack([with_noise(speech, 10.0), torch.zeros(RATE)])  # the second: silence
    reference = torch.stack([speech, torch.zeros(RATE)])
    suite = MetricSuite(["pesq", "si_snr"], label="of the test set")

    suite.update(estimate, reference, None, RATE)
    with caplog.at_level("WARNING"):
        got = suite.result()

    alone = MetricSuite(["pesq"])
    alone.update(estimate[:1], reference[:1], None, RATE)
    assert got["pesq"] == alone.result()["pesq"]
    assert "pesq of the test set: 1 of 2 items could not be scored and are left out of its mean; the first: " \
           "metric 'pesq' cannot score an item (No utterances detected)" in caplog.text
