"""`python -m tests.solver.cli_rank_dump DUMP_DIR ARGS...`: the real `baton` CLI, where every rank
also saves its trained weights when its solver closes.

Only rank 0 writes checkpoints (or each rank its shards), and the DDP and FSDP tests must compare the ranks' models, so this
instrumentation adds one file per rank (`DUMP_DIR/rank<k>.pt`); everything else is `baton`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from baton import distrib
from baton.__main__ import main
from baton.solver.fsdp import full_tensors
from baton.solver.loop import BaseSolver
from baton.stateful import unwrap

_close = BaseSolver.close


def close_and_dump(self: BaseSolver) -> None:
    # Whole tensors under FSDP (gathered: every rank closes its solver, so all of them join).
    weights = {name: full_tensors(unwrap(module).state_dict()) for name, module in self.registered_modules().items()}
    wrapped = {name: type(module).__name__ for name, module in self.registered_modules().items()}
    torch.save({"weights": weights, "wrapped": wrapped}, Path(sys.argv[1]) / f"rank{distrib.rank()}.pt")
    _close(self)


if __name__ == "__main__":
    Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
    BaseSolver.close = close_and_dump  # type: ignore[method-assign]
    sys.exit(main(sys.argv[2:]))
