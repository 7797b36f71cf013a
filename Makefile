# ColdTrace — two commands matter: `make demo` and `make test`.
# Everything sets itself up on a fresh Debian machine with Python 3.11.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench soak lint setup system clean contract

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

## system: apt and npm packages the tests and demo use (installed only if missing)
system:
	bash scripts/ensure-system.sh

setup: $(STAMP) system

demo: setup
	$(VENV)/bin/coldtrace demo

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(PY) -m bench

## soak: the fault, attack and fuzzing suites at full size (hours, not minutes)
soak: setup
	COLDTRACE_SOAK=1 $(PY) -m pytest -q tests/reliability tests/attacks tests/fuzz $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check protocol
	$(VENV)/bin/mypy

## contract: recompile the anchor contract with solcjs (npm) into its committed artifact
contract: setup
	$(PY) -m gateway.evidence.contracts.build

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis
