"""Reference tasks. The solver registry names them (`baton/solver/registry.py`) and imports
each module only when its solver is asked for, so `import baton` stays light."""
