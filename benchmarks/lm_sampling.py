"""Seconds to sample codes from the LM with the key/value cache and without it (the whole
sequence run again at every step), side by side in one process, and their ratio.

The LM is the one `solver=lm/debug` trains (4 layers of 128, 4 codebooks, label summed in),
untrained: sampling costs the same whatever the weights. `evaluate` samples 64 clips of 125
frames (128 delay steps) at each CFG scale; with guidance both branches run in one batch.

    python benchmarks/lm_sampling.py [--frames 125] [--batch 64] [--cfg 3.0] [--rounds 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from baton.conditioners import ConditioningAttributes
from baton.models.lm import CodesLM

CLASSES = ["note_bright", "note_mellow", "chirp_up", "chirp_down", "noise_white", "noise_pink", "noise_brown", "pulses"]


def seconds(model: CodesLM, attributes: list[ConditioningAttributes], frames: int, cfg: float, use_cache: bool,
            device: str) -> float:
    start = time.perf_counter()
    model.generate(attributes, frames, top_k=250, cfg_scale=cfg, use_cache=use_cache,
                   generator=torch.Generator().manual_seed(0))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=125)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--cfg", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    conditioner = {"conditioners": {"label": {"type": "lut", "classes": CLASSES}}, "fuser": {"sum": ["label"]},
                   "attribute_dropout": {}, "cfg_dropout": 0.2}
    model = CodesLM(256, 4, dim=args.dim, heads=4, layers=args.layers, max_steps=args.frames + 8, dropout=0.0,
                    conditioner=conditioner).to(args.device).eval()
    attributes = [ConditioningAttributes(categorical={"label": CLASSES[i % len(CLASSES)]}) for i in range(args.batch)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}: "
          f"{args.batch} clips x {args.frames} frames, CFG {args.cfg}, dim {args.dim} x {args.layers} layers")
    seconds(model, attributes[:2], 4, args.cfg, True, args.device)  # warm-up
    cached, full = [], []
    for _ in range(args.rounds):  # interleaved, so that machine noise hits both alike
        cached.append(seconds(model, attributes, args.frames, args.cfg, True, args.device))
        full.append(seconds(model, attributes, args.frames, args.cfg, False, args.device))
    with_cache, without = statistics.median(cached), statistics.median(full)
    print(f"with the cache {with_cache:.2f} s   without {without:.2f} s   speed-up {without / with_cache:.1f}x")


if __name__ == "__main__":
    main()
