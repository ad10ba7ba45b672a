"""The conditioner registry: `@register_conditioner("name")` on a `Conditioner` subclass makes
it available as `type: name` in the `conditioner` config group."""

from __future__ import annotations

from ..registry import Registry

conditioners = Registry("conditioner", builtins=("baton.conditioners.conditioners",))
register_conditioner = conditioners.register
