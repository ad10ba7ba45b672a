"""Per-rank memory and per-update time of FSDP against DDP, on the LM of `solver=lm/default`.

Two processes (gloo on CPU, nccl with `--device cuda`) build the same CodesLM (dim 512, 12
decoder layers, 4 codebooks of 1024 codes: the `lm/default` size), hand it to the engine's own
wrapping (`baton.solver.ddp.wrap_trainable`, or `baton.solver.fsdp.shard_trainable` with the
`lm/fsdp` blocks: one unit per DecoderLayer), train it with AdamW for a few updates, and count
what each rank holds. DDP and FSDP runs alternate, round after round, in one invocation.

Printed per strategy: bytes of parameters + optimizer state held by one rank (the local shards'
bytes under FSDP), peak CUDA memory on a GPU, and the median time per update; then the ratios
FSDP / DDP. Target: bytes ratio <= 0.55 on 2 ranks (each rank holds half, plus the few
replicated scalars such as Adam's step counts).

    python benchmarks/fsdp.py [--rounds 3] [--updates 4] [--batch 4] [--steps 64] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baton.models.lm import CodesLM  # noqa: E402
from baton.solver import ddp, fsdp  # noqa: E402

CARD, CODEBOOKS = 1024, 4


def local_bytes(tensor: torch.Tensor) -> int:
    """Bytes this rank holds for `tensor` (its shard, for a DTensor)."""
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return local.numel() * local.element_size()


def held_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    params = sum(local_bytes(p) for p in model.parameters())
    state = sum(local_bytes(v) for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor))
    return params + state


def worker(rank: int, world: int, port: int, strategy: str, args: argparse.Namespace, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    backend = "nccl" if args.device == "cuda" else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world)
    device = torch.device(f"cuda:{rank}" if args.device == "cuda" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // world))
    torch.manual_seed(0)
    model = CodesLM(CARD, CODEBOOKS, dim=512, heads=8, layers=12, max_steps=args.steps + 8, dropout=0.0).to(device)
    if strategy == "ddp":
        wrapped = ddp.wrap_trainable({"model": model}, device)["model"]
    else:
        policy = fsdp.mixed_precision(True, "bfloat16") if args.bf16 else None
        fsdp.shard_trainable({"model": model}, blocks=["DecoderLayer"], policy=policy)
        wrapped = model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    generator = torch.Generator().manual_seed(rank)
    codes = torch.randint(0, CARD, (args.batch, args.steps, CODEBOOKS), generator=generator).to(device)
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for update in range(args.updates + 1):  # the first one warms up (allocations, lazy init)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            logits = wrapped(codes, [])
        loss = F.cross_entropy(logits.float().reshape(-1, CARD), codes.reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if update:
            times.append(time.perf_counter() - start)
    result = {
        "bytes": held_bytes(model, optimizer),
        "seconds": statistics.median(times),
        "peak": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        "params": sum(p.numel() for p in model.parameters() if not hasattr(p, "to_local"))
        + sum(p.to_local().numel() for p in model.parameters() if hasattr(p, "to_local")),
    }
    Path(out, f"{strategy}-{rank}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--updates", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4, help="per-rank batch")
    parser.add_argument("--steps", type=int, default=64, help="sequence steps")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--bf16", action="store_true", help="autocast bf16 (FSDP: its bf16 policy)")
    args = parser.parse_args()
    world = 2
    found: dict[str, list[dict]] = {"ddp": [], "fsdp": []}
    with tempfile.TemporaryDirectory() as out:
        for _ in range(args.rounds):
            for strategy in ("ddp", "fsdp"):
                mp.spawn(worker, args=(world, free_port(), strategy, args, out), nprocs=world, join=True)
                found[strategy].append(json.loads(Path(out, f"{strategy}-0.json").read_text()))
    total = sum(p.numel() for p in CodesLM(CARD, CODEBOOKS, dim=512, heads=8, layers=12,
                                           max_steps=args.steps + 8).parameters())
    print(f"CodesLM {total / 1e6:.1f}M parameters, AdamW, {world} ranks, per-rank batch {args.batch} x "
          f"{args.steps} steps, {args.device}{' bf16' if args.bf16 else ''}, {args.rounds} rounds")
    summary = {}
    for strategy, runs in found.items():
        held = runs[-1]["bytes"]
        seconds = statistics.median(r["seconds"] for r in runs)
        peak = runs[-1]["peak"]
        summary[strategy] = (held, seconds, peak)
        extra = f", peak CUDA {peak / 2**20:.0f} MiB" if peak else ""
        print(f"  {strategy:4}  params + optimizer state per rank {held / 2**20:8.1f} MiB, "
              f"{seconds * 1e3:7.1f} ms/update{extra}")
    (ddp_bytes, ddp_s, ddp_peak), (fsdp_bytes, fsdp_s, fsdp_peak) = summary["ddp"], summary["fsdp"]
    print(f"  FSDP / DDP: bytes per rank {fsdp_bytes / ddp_bytes:.3f} (target <= 0.55), "
          f"time per update {fsdp_s / ddp_s:.2f}"
          + (f", peak CUDA memory {fsdp_peak / ddp_peak:.3f}" if ddp_peak else ""))


if __name__ == "__main__":
    main()
