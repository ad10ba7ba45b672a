"""One registry per family of step components: networks, injectors, losses, evaluators.

A YAML file names a component by `type` (networks: `which_model`); the registry maps that name
to a class. A user's project adds its own with a decorator and lists its module in the config's
`imports`, without touching baton:

    from baton.steps import Loss, register_loss

    @register_loss("envelope")
    class EnvelopeLoss(Loss):
        ...

baton's built-ins live in modules that are imported the first time a registry is read, so
`import baton` stays light.
"""

from __future__ import annotations

from ..registry import Registry, check_options

BUILTINS = (
    "baton.steps.injectors",
    "baton.steps.losses",
    "baton.steps.evaluators",
    "baton.steps.networks",
)

networks = Registry("network", BUILTINS)
injectors = Registry("injector", BUILTINS)
losses = Registry("loss", BUILTINS)
evaluators = Registry("evaluator", BUILTINS)

register_network = networks.register
register_injector = injectors.register
register_loss = losses.register
register_evaluator = evaluators.register

__all__ = ["Registry", "check_options", "evaluators", "injectors", "losses", "networks",
           "register_evaluator", "register_injector", "register_loss", "register_network"]
