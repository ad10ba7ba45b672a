# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
TORCH_CONSTRAINT ?= constraints/torch-cpu.txt
PIP_CONSTRAINT = $(if $(TORCH_CONSTRAINT),-c $(TORCH_CONSTRAINT),)
BIN = $(VENV)/bin
PYTEST_ARGS ?=
# `make test` runs its tests in this many processes (pytest-xdist; each on one thread, a file's
# tests together so that they share its fixtures); TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2

.PHONY: install demo test test-slow test-slurm test-repeat test-all lint bench clean

$(BIN)/.installed: pyproject.toml $(TORCH_CONSTRAINT)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(PIP_CONSTRAINT) -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# A real training run on the built-in dataset: a small neural codec, about 2 minutes on 2 CPU cores.
demo: install
	$(BIN)/baton run solver=compression/debug

test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow and not slurm" $(PYTEST_ARGS)

# The SLURM path on a real one-node cluster started on this machine (needs root; Debian/Ubuntu).
test-slurm: install
	scripts/local_slurm.sh start
	$(BIN)/python -m pytest -m slurm $(PYTEST_ARGS)

test-slow: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m slow $(PYTEST_ARGS)

# The tests that depend on timing (signals, kills, several ranks, W&B's writer; SLURM when a
# cluster answers), N times in a row: how many runs each passed (scripts/test_repeat.py).
N ?= 20
test-repeat: install
	$(BIN)/python scripts/test_repeat.py $(N)

test-all: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check baton tests benchmarks
	$(BIN)/mypy baton

bench: install
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
