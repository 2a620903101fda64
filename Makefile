# The two commands a newcomer needs: `make run` and `make test`.
# Both create the virtualenv and install dependencies on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint typecheck unit bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/sla-worker replay examples/tickets.jsonl --until 2026-12-05T00:00:00Z

lint: $(BIN)/.installed
	$(BIN)/ruff check worker tests bench scripts
	$(BIN)/ruff format --check worker tests bench scripts

typecheck: $(BIN)/.installed
	$(BIN)/mypy

# The whole suite: lint, types, unit and property tests, and integration tests against
# a real Kafka broker that tests/integration/conftest.py starts with scripts/kafka-local.
# pytest exits 5 when it collects no test, and make fails on any non-zero exit.
test: lint typecheck
	$(BIN)/pytest

unit: $(BIN)/.installed
	$(BIN)/pytest tests/unit

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
