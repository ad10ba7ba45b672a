"""Config-driven training steps (DL-Art-School style) for `ExtensibleSolver`: components,
their registries, and the checked graph a config becomes. See docs/steps.md."""

from .components import DiscriminatorOutput, Evaluator, Injector, Loss, State, StepContext
from .registry import (
    register_evaluator,
    register_injector,
    register_loss,
    register_network,
)

__all__ = [
    "DiscriminatorOutput", "Evaluator", "Injector", "Loss", "State", "StepContext",
    "register_evaluator", "register_injector", "register_loss", "register_network",
]
