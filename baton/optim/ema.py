"""Exponential moving average of model weights, bias-corrected.

A plain EMA started from zeros is biased towards zero early on; one started from the first
weights remembers the random init for thousands of updates. Bias correction (as in Adam) gives
the exact weighted average of the weights seen so far: each update uses the effective decay
beta * (1 - beta^(t-1)) / (1 - beta^t), so the stored average is already corrected and can be
swapped in or exported as is. Averages are kept in float32 whatever the model's dtype.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..stateful import copy_state, is_dtensor


class ModuleEMA:
    def __init__(
        self, modules: Mapping[str, nn.Module], decay: float = 0.999, device: str | None = None
    ) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.modules = dict(modules)
        self.decay = decay
        self.device = device
        self.num_updates = 0
        self.averages: dict[str, dict[str, torch.Tensor]] = {
            name: {k: self._fresh(v) for k, v in module.state_dict().items()}
            for name, module in self.modules.items()
        }

    def _fresh(self, tensor: torch.Tensor) -> torch.Tensor:
        # A shard (FSDP) stays on its mesh's device: moved, it would no longer match the mesh.
        device = tensor.device if is_dtensor(tensor) else (self.device or tensor.device)
        dtype = torch.float32 if tensor.is_floating_point() else tensor.dtype
        return tensor.detach().to(device=device, dtype=dtype, copy=True)

    def add(self, name: str, module: nn.Module) -> None:
        """Average one more module (one average per module, all on the same schedule)."""
        if name in self.modules:
            raise ValueError(f"register_ema('{name}'): '{name}' is averaged already")
        if self.num_updates:
            raise ValueError(f"register_ema('{name}'): averaging started already; register every module in build")
        self.modules[name] = module
        self.averages[name] = {k: self._fresh(v) for k, v in module.state_dict().items()}

    def restart(self) -> None:
        """Take the averages afresh from the modules, before the first update: after the engine
        sharded them (FSDP), the averages become shards too."""
        if self.num_updates:
            raise ValueError("the EMA cannot restart after it averaged updates")
        self.averages = {name: {k: self._fresh(v) for k, v in module.state_dict().items()}
                         for name, module in self.modules.items()}

    @torch.no_grad()
    def update(self) -> None:
        self.num_updates += 1
        t, beta = self.num_updates, self.decay
        keep = beta * (1 - beta ** (t - 1)) / (1 - beta**t)
        for name, module in self.modules.items():
            average = self.averages[name]
            for key, value in module.state_dict().items():
                if value.is_floating_point():
                    average[key].mul_(keep).add_(value.detach().to(average[key]), alpha=1 - keep)
                else:  # step counters and the like follow the model
                    average[key].copy_(value)

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """Run the block with the averaged weights loaded in the modules, then put back the live ones."""
        live = {name: copy_state(m.state_dict()) for name, m in self.modules.items()}
        try:
            for name, module in self.modules.items():
                module.load_state_dict(self.averages[name])
            yield
        finally:
            for name, module in self.modules.items():
                module.load_state_dict(live[name])

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "num_updates": self.num_updates, "averages": self.averages}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.decay = state["decay"]
        self.num_updates = state["num_updates"]
        for name, average in state["averages"].items():
            for key, value in average.items():
                self.averages[name][key].copy_(value)
