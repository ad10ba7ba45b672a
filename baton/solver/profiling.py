"""Profile a few updates of the first train stage of a process (`profiler.*` in the config).

The trace goes to `<xp>/profiler` in TensorBoard's format. Only the first train stage of a
process is profiled: later ones would add nothing but files.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger("baton.solver")


class UpdateProfiler:
    def __init__(self, spec: Any, folder: Path, device: torch.device) -> None:
        self.enabled = bool(spec.enabled)
        self.wait, self.warmup, self.active = int(spec.wait), int(spec.warmup), int(spec.active)
        self.folder = Path(folder) / "profiler"
        self.device = device
        self._profiler: Any = None
        self._steps = 0

    def start(self) -> None:
        if not self.enabled or self._steps or self._profiler is not None:
            return
        from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

        activities = [ProfilerActivity.CPU]
        if self.device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        self._profiler = profile(
            activities=activities,
            schedule=schedule(wait=self.wait, warmup=self.warmup, active=self.active),
            on_trace_ready=tensorboard_trace_handler(str(self.folder)),
        )
        self._profiler.start()
        logger.info("profiling %d updates into %s", self.active, self.folder)

    def step(self) -> None:
        """After each update; stops once the active window is written."""
        if self._profiler is None:
            return
        self._profiler.step()
        self._steps += 1
        if self._steps >= self.wait + self.warmup + self.active:
            self.stop()

    def stop(self) -> None:
        if self._profiler is not None:
            self._profiler.stop()
            self._profiler = None
