# The two commands a newcomer needs: `make run` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# `make run` installs what the product needs; `make test` (and bench) add the dev extras.
RUNTIME_STAMP := $(VENV)/.runtime-stamp
STAMP := $(VENV)/.installed-stamp
# Tests use AGG_TEST_AMQP_URL when set, else the local default broker.
TEST_AMQP_URL ?= $(or $(AGG_TEST_AMQP_URL),amqp://guest:guest@localhost:5672/)

.PHONY: all install install-runtime run test lint typecheck pytest broker test-broker test-postgres test-browser bench clean

all: test

$(RUNTIME_STAMP): pyproject.toml
	@bash scripts/bootstrap-venv.sh "$(PYTHON)" "$(VENV)"
	$(BIN)/pip install -q --disable-pip-version-check -e .
	@touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install-runtime: $(RUNTIME_STAMP)

install: $(STAMP)

broker:
	@bash scripts/ensure-rabbitmq.sh

test-broker:
	@bash scripts/ensure-rabbitmq.sh "$(TEST_AMQP_URL)"

# AGG_TEST_PG_URL when set, else the local server, else what a throwaway cluster needs.
test-postgres:
	@bash scripts/ensure-postgres.sh

run: install-runtime broker
	@bash scripts/run.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

typecheck: install
	$(BIN)/mypy

# Debian's chromium for the page's browser test, where it is missing.
test-browser:
	@bash scripts/ensure-chromium.sh

pytest: install test-broker test-postgres test-browser
	$(BIN)/pytest

test: lint typecheck pytest

# Raw limits and product figures, same run, same broker; writes bench/results/ and README.md.
bench: install broker
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache data
