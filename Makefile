# The two commands a newcomer needs: `make run` and `make test`.
# Both create the virtualenv and install dependencies on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run replay report-example test lint typecheck unit lock clean

# Which build of the hot path is installed: pure Python (the default) or compiled with
# mypyc (SLA_WORKER_COMPILED=1, needs a C compiler). The stamp names it, so switching
# reinstalls.
BUILD := $(if $(filter-out 0,$(SLA_WORKER_COMPILED)),compiled,pure)
INSTALLED := $(BIN)/.installed-$(BUILD)

# Dependencies at the versions requirements/dev.lock pins (hash-checked), then the project
# itself (editable, pure Python; compiling is the next step's). `make lock` refreshes the
# locks. The .pth puts the checkout on the virtualenv's path: the contributor's tools
# (devtools/, never installed) import from any script, e.g. .venv/bin/python bench/soak.py.
$(BIN)/.deps: pyproject.toml setup.py requirements/dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.lock
	SLA_WORKER_COMPILED=0 $(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()["purelib"], \
	  "sla-worker-checkout.pth").write_text("$(CURDIR)\n")'
	touch $@

# The pure build reinstalls only to remove extensions a compiled build left beside the
# sources. The compiled build (setup.py: worker/replay.py and parts of worker/core/ to C
# extensions beside the sources) is rebuilt when one of those sources changed (45-50 s),
# since Python would otherwise keep loading the old extension.
$(INSTALLED): $(BIN)/.deps $(if $(filter compiled,$(BUILD)),worker/replay.py $(wildcard worker/core/*.py))
	rm -f $(BIN)/.installed-*
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# The demo: a local Kafka broker, the worker with a minute-scale demo policy, and live
# ticket traffic; warnings and breaches print as they fire. Ctrl-C stops it.
run: $(INSTALLED)
	@addr=$$(scripts/kafka-local start | tail -n 1) && \
	  $(BIN)/sla-worker demo --bootstrap-servers "$$addr" $(DEMO_ARGS)

# The same engine with no Kafka at all: replay a recorded stream.
replay: $(INSTALLED)
	$(BIN)/sla-worker replay examples/tickets.jsonl --until 2026-12-05T00:00:00Z

# docs/report.png: the HTML report of a month of synthetic traffic (200,000 events, 40
# customers), replayed with --finished-timers and rendered by headless Chromium.
report-example: $(INSTALLED)
	mkdir -p build/report
	$(BIN)/python -c 'import sys; from worker.traffic import synthetic_stream; \
	  lines, _ = synthetic_stream(200_000, 20_000, 7, customers=40); \
	  sys.stdout.buffer.write(b"\n".join(lines) + b"\n")' > build/report/events.jsonl
	$(BIN)/sla-worker replay build/report/events.jsonl --now 2027-01-01T00:00:00Z \
	  --finished-timers --output build/report/records.jsonl
	$(BIN)/sla-worker report build/report/records.jsonl --period week \
	  --html build/report/report.html --json build/report/report.json --csv build/report/report.csv
	scripts/ensure-chromium
	chromium --headless --no-sandbox --disable-gpu --user-data-dir=$$(mktemp -d) \
	  --screenshot=docs/report.png --window-size=1280,2000 file://$(CURDIR)/build/report/report.html

lint: $(INSTALLED)
	$(BIN)/ruff check setup.py worker devtools tests bench scripts
	$(BIN)/ruff format --check setup.py worker devtools tests bench scripts

typecheck: $(INSTALLED)
	$(BIN)/mypy

# The whole suite: lint, types, unit and property tests, and integration tests against
# a real Kafka broker that tests/integration/conftest.py starts with scripts/kafka-local.
# scripts/ensure-prometheus first provides promtool and prometheus (alert rule tests and
# the observability test run them), scripts/ensure-chromium the browser of the report test,
# scripts/ensure-asyncapi-parser the AsyncAPI parser (npm) that validates schemas/asyncapi.yaml,
# scripts/ensure-axe-core the accessibility checker (npm) of the at-risk board test.
# The container tests (tests/integration/containers/) get podman and the stand-in base
# images from scripts/container-bases (docs/development.md).
# pytest exits 5 when it collects no test, and make fails on any non-zero exit.
test: lint typecheck
	scripts/ensure-prometheus
	scripts/ensure-chromium
	scripts/ensure-asyncapi-parser
	scripts/ensure-axe-core
	$(BIN)/pytest

unit: $(INSTALLED)
	$(BIN)/pytest tests/unit

# Re-resolve the pinned versions (after changing dependencies in pyproject.toml, or to take
# new releases): pip-tools' pip-compile, from a throwaway virtualenv, for Python 3.11.
# requirements/runtime.lock is what the container image installs; dev.lock, make and CI.
PIP_TOOLS := pip-tools==7.7.0
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet '$(PIP_TOOLS)'
	.lock-venv/bin/pip-compile --quiet --upgrade --strip-extras --generate-hashes --allow-unsafe \
	  --no-emit-find-links -o requirements/runtime.lock pyproject.toml
	.lock-venv/bin/pip-compile --quiet --upgrade --strip-extras --generate-hashes --allow-unsafe \
	  --no-emit-find-links --extra dev -o requirements/dev.lock pyproject.toml
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build
	rm -f sla_worker__mypyc.*.so worker/*.so worker/*/*.so
