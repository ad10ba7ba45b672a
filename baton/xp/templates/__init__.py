"""The files `baton new NAME` writes, as real files: ruff and mypy check the Python ones.

`__NAME__` and `__CLASS__` (valid identifiers, so each template is valid Python) are replaced by
the task's name and solver class (`baton.xp.scaffold.plan`). File names here avoid `test_*` and
`conftest`, so pytest never collects a template: `check_task.py` becomes tests/test_NAME.py,
`tests_conftest.py` tests/conftest.py.
"""
