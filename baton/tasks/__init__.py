"""Reference tasks. Each registers its solver lazily, so `import baton` stays light."""

from ..solver.registry import register_builtin

register_builtin("example", "baton.tasks.example")
register_builtin("compression", "baton.tasks.compression")
register_builtin("classification", "baton.tasks.classification")
