# Developer commands. `make test` works from a fresh clone with only python3 (>= 3.11) and make:
# it creates .venv, installs the package with its dev extras (again only when pyproject.toml
# changes), then runs lint, format check, type check and the test-suite, stopping at the first
# failure. Tests use $DATABASE_URL when set, else an embedded PostgreSQL in .pgdata/tests.
#
#   make test PYTHON=python3.13           build the venv with another interpreter
#   make test PYTEST_ARGS="-k storage -x"  pass extra arguments to pytest

PYTHON ?= python3
VENV ?= .venv
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PGDATA_TESTS := .pgdata/tests
PIP_FLAGS := --quiet --disable-pip-version-check

.DEFAULT_GOAL := test
DEMO_SERVE ?= 1
DEMO_ARGS ?=
DEMO_PORT ?= 8000
DEMO_WORKERS ?= 2
PGDATA_DEMO := example_project/.pgdata

BENCH_ARGS ?=

.PHONY: test demo bench docs dist lint typecheck clean pg-stop

test: $(STAMP)
	$(BIN)/ruff check --quiet .
	$(BIN)/ruff format --check --quiet .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The documentation site (Sphinx, MyST pages, Furo) into docs/_build/html. Every warning is an
# error and every cross-reference must resolve (-n), as on Read the Docs (.readthedocs.yaml).
# The pages' code blocks are run by the test-suite (tests/integration/test_docs*.py).
docs: $(STAMP)
	$(BIN)/python -m sphinx -W --keep-going -n -q -b html docs docs/_build/html

# The release files: the sdist and the wheel into dist/ (`python -m build`, hatchling in an
# isolated environment), then `twine check --strict` on both (metadata, the README as PyPI
# renders it). .ci/run installs the wheel into a fresh venv and runs .ci/wheel_smoke.py on it.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

# Stop the embedded test server (a no-op if it isn't running). Without a venv, signal it directly:
# SIGINT is PostgreSQL's "fast shutdown".
pg-stop:
	@for data in $(PGDATA_TESTS) $(PGDATA_DEMO); do \
		if [ -x $(BIN)/python ] && [ -f $(STAMP) ]; then \
			$(BIN)/python -c 'import sys; from hephaestus_django.testing.embedded import stop_server; stop_server(sys.argv[1])' $$data; \
		elif [ -f $$data/pgdata/postmaster.pid ]; then \
			kill -INT "$$(head -n 1 $$data/pgdata/postmaster.pid)" 2>/dev/null || true; \
		fi; \
	done

# Removes the venv and caches; keeps the embedded server's data (.pgdata), which is reused.
clean: pg-stop
	rm -rf $(VENV) .tox .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist *.egg-info docs/_build
	find . -path ./.pgdata -prune -o -type d -name __pycache__ -exec rm -rf {} +

# The example project: migrate, a superuser, procrastinate workers (DEMO_WORKERS, default 2)
# and the sweep, orders in every state run by the workers, a summary; then the admin at
# http://127.0.0.1:$(DEMO_PORT)/admin/ with the workers running, until Ctrl-C (DEMO_SERVE=0
# exits after the summary). The demo starts and stops every process itself. Uses $DATABASE_URL
# when set, else an embedded PostgreSQL kept in example_project/.pgdata (logs in .pgdata/logs).
demo: $(STAMP)
	cd example_project && ../$(BIN)/python manage.py demo --workers $(DEMO_WORKERS) \
		$(if $(filter-out 0,$(DEMO_SERVE)),--serve 127.0.0.1:$(DEMO_PORT)) $(DEMO_ARGS)

# The benchmark suite: every figure a ratio against raw psycopg 3 measured in the same run,
# interleaved; writes bench/results/<timestamp>.json and .md (a full run also LATEST.md). About
# 11 minutes (it loads 1,000,000 rows, then runs the queued runner's worker processes);
# BENCH_ARGS=--quick is the CI's short run at 100,000 rows.
# Uses $DATABASE_URL when set, else an embedded PostgreSQL kept in .pgdata/bench.
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: '$(PYTHON)' not found; install Python >= 3.11 or run: make PYTHON=/path/to/python3.11" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.version_info >= (3, 11) or sys.exit("error: $(PYTHON) is Python %s; hephaestus-django needs >= 3.11. Run: make PYTHON=/path/to/python3.11" % sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }

# pip runs quietly (CI logs stay short), so say first what the silent minutes are.
$(STAMP): pyproject.toml | $(BIN)/python
	@echo "Installing hephaestus-django and its dev dependencies into $(VENV) (quietly; the first time takes a few minutes)..."
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[dev]'
	@touch $@
