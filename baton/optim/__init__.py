"""Optimisation: optimizers, LR schedules, EMA, mixed precision, and the gradient stepper."""

from .amp import autocast, make_grad_scaler
from .builders import build_lr_scheduler, build_optimizer, param_groups
from .ema import ModuleEMA
from .lamb import Lamb
from .stepper import GradientStepper

__all__ = [
    "GradientStepper",
    "Lamb",
    "ModuleEMA",
    "autocast",
    "build_lr_scheduler",
    "build_optimizer",
    "make_grad_scaler",
    "param_groups",
]
