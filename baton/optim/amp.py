"""Mixed precision: torch.autocast, and a GradScaler only where fp16 needs one.

bf16 has fp32's exponent range, so it needs no loss scaling and runs on CPU and CUDA. fp16
underflows without scaling, so it gets a GradScaler, and only on CUDA.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from ..errors import ConfigError

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def autocast_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ConfigError(f"autocast_dtype='{name}' is unknown; use bfloat16 or float16")
    return DTYPES[name]


def check_autocast(enabled: bool, dtype_name: str, device: torch.device) -> None:
    if enabled and autocast_dtype(dtype_name) is torch.float16 and device.type != "cuda":
        raise ConfigError(
            f"autocast_dtype=float16 needs a CUDA device (device is {device}); "
            "use autocast_dtype=bfloat16 on CPU"
        )


def autocast(enabled: bool, dtype_name: str, device: torch.device) -> Any:
    """The autocast context for a forward pass (a no-op context when disabled)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=autocast_dtype(dtype_name))


def make_grad_scaler(enabled: bool, dtype_name: str, device: torch.device) -> Any:
    """A GradScaler for fp16 on CUDA, else None."""
    check_autocast(enabled, dtype_name, device)
    if enabled and autocast_dtype(dtype_name) is torch.float16:
        return torch.amp.GradScaler("cuda")
    return None
