# Quick start: `make demo` runs the main job, `make test` runs the whole suite.
# Both build .venv/ first (idempotent: redone only when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch that this kind of machine keeps on disk; a GPU box may set its own.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
# The integration tests' PostgreSQL (this kind of machine runs one: trust auth, database `test`).
DCLAW_TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test
export DCLAW_TEST_DATABASE_URL
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# robel 0.1.2's metadata is rejected by pip >= 24.1; this pip reads it.
	$(BIN)/python -m pip install -q 'pip>=23,<24.1'
	$(BIN)/python -m pip install -q '$(TORCH_SPEC)'
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	# Model files only: robel's own pins (gym<0.14, mujoco-py) do not install on current Python.
	$(BIN)/python -m pip install -q --no-deps robel==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dclaw demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks.sim_speed

clean-venv:
	rm -rf $(VENV)
