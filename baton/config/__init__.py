"""Configuration: Hydra groups, the environment layer, `//reference` paths and signatures.

`compose(overrides)` returns the resolved config with `xp.sig` and `xp.folder` set; everything a
solver needs comes from it, whether it runs from the CLI, a grid, a notebook or a test.
"""

from baton.config.compose import Composition, compose, compose_xp
from baton.config.env import Env, load_env
from baton.config.search import config_dirs

__all__ = ["Composition", "Env", "compose", "compose_xp", "config_dirs", "load_env"]
