"""Samples/s of AudioDataset + collate through a DataLoader with 0, 1 and 2 workers.

Random 1 s segments of the built-in dataset (written to the data cache first if needed), as a
training loop would read them. Reading must not be what a small model waits for.

    python benchmarks/data.py [--batch-size 16] [--seconds 3] [--workers 0 1 2] [--sample-rate 24000]
"""

from __future__ import annotations

import argparse
import time

import torch

from baton.data import AudioDataset, build_loader, synth


def measure(dataset: AudioDataset, workers: int, batch_size: int, seconds: float) -> tuple[float, int]:
    """Items per second over at least `seconds`, after one warm-up batch (worker start-up)."""
    loader = build_loader(dataset, batch_size=batch_size, shuffle=True, seed=0, num_workers=workers,
                          drop_last=True)
    items, epoch = 0, 0
    start = None
    while True:
        dataset.set_epoch(epoch)
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            if start is None:  # the first batch pays for starting workers: not counted
                start = time.perf_counter()
                continue
            items += len(batch)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return items / elapsed, items
        epoch += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per setting")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--segment", type=float, default=1.0, help="segment duration (s)")
    parser.add_argument("--sample-rate", type=int, default=synth.SAMPLE_RATE,
                        help="target rate; another rate adds resampling to every item")
    args = parser.parse_args()

    begin = time.perf_counter()
    manifest = synth.manifest_path("train")
    print(f"dataset: {manifest} (ready in {time.perf_counter() - begin:.1f}s)")
    dataset = AudioDataset(manifest, sample_rate=args.sample_rate, segment_duration=args.segment)
    print(f"torch threads {torch.get_num_threads()}, batch {args.batch_size}, "
          f"random {args.segment:g}s segments, {synth.SAMPLE_RATE} Hz files read at {args.sample_rate} Hz")
    print(f"{'workers':>8} {'samples/s':>10} {'audio s/s':>10} {'items':>7}")
    for workers in args.workers:
        rate, items = measure(dataset, workers, args.batch_size, args.seconds)
        print(f"{workers:>8} {rate:>10.0f} {rate * args.segment:>10.0f} {items:>7}")


if __name__ == "__main__":
    main()
