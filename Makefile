# Everyday commands. Each one is what CI runs, or what the README shows; `make help` lists them.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: help install test lint format typecheck dev sandbox-ui bench ci

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

install:  ## create the venv and install the project with its test extra
	python3.11 -m venv $(VENV) && $(VENV)/bin/pip install -q -e '.[test]'

test:  ## the whole test suite (Postgres and Redis tests skip when the servers are down, unless CI=true)
	$(PY) -m pytest

lint:  ## ruff: lint rules and formatting, as CI checks them
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format:  ## ruff: fix what can be fixed, then format
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

typecheck:  ## mypy over the package
	$(VENV)/bin/mypy

dev:  ## the Dagster UI on this folder's dagster.yaml (SQLite under data/dagster)
	$(VENV)/bin/tiklive ui

sandbox-ui:  ## the bundled sandbox API and the Dagster UI wired to it (no key, no credits)
	$(VENV)/bin/tiklive ui --sandbox

bench:  ## every benchmark under benchmarks/ (figures go in the README's Performance table)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

ci:  ## what CI runs: services up, lint, types, tests
	.ci/run
