# KAI Messaging — the commands of the README. Everything installs into .venv from this
# repository's own files (pyproject.toml, pinned by constraints.txt).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --quiet --disable-pip-version-check
# What `make run` needs, and the dev tools on top of it (pytest, linters, Playwright, the
# deploy/ validators: several hundred MB that a first run should not wait for).
RUN_STAMP   := $(VENV)/.installed-runtime
STAMP       := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
NODE_STAMP  := node_modules/.installed
PYTEST_ARGS ?=
# pytest-xdist workers for `make test`: each has its own database, virtual host and Redis
# database, and most tests wait on I/O (brokers, browsers, child processes), so three keep two
# cores busy: the whole suite took 633 s with three, 640-710 s with two before the console's
# browser tests were added.
TEST_PROCESSES ?= 3

.PHONY: install run test lint typecheck bench bench-inbox chaos fleet-demo screenshots clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11 or newer is needed (PYTHON=python3.x make ...)")'
	$(PYTHON) -m venv $(VENV)
	@$(PIP) install --upgrade pip

$(RUN_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	@echo "installing the runtime dependencies into $(VENV)"
	@$(PIP) install -c constraints.txt -e .
	@touch $(RUN_STAMP)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	@echo "installing the runtime and dev dependencies into $(VENV)"
	@$(PIP) install -c constraints.txt -e '.[dev]'
	@touch $(STAMP) $(RUN_STAMP)

install: $(STAMP) $(NODE_STAMP)

# The browser tests' axe-core audit, pinned by package-lock.json; without npm the service
# still installs and runs, and the accessibility tests fail saying what is missing.
$(NODE_STAMP): package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		echo "installing the browser tests' packages into node_modules"; \
		npm ci --no-audit --no-fund --silent && touch $(NODE_STAMP); \
	else \
		echo "npm not found: node_modules not installed (the axe-core accessibility tests will fail)"; \
	fi

# The bench extra on top of the dev install, again only when the pins or the extras change.
$(BENCH_STAMP): $(STAMP)
	$(PIP) install -c constraints.txt -e '.[dev,bench]'
	touch $(BENCH_STAMP)

## Start the gateway on 127.0.0.1:8000 (PORT=8001 make run for another port) and every channel
## worker, on the embedded defaults. Installs the runtime dependencies only.
run: $(RUN_STAMP)
	@$(BIN)/kai-messaging run

## The whole test suite against the local RabbitMQ, PostgreSQL and Redis.
test: install
	$(BIN)/pytest -n $(TEST_PROCESSES) $(PYTEST_ARGS)

## ruff, and the architecture's import rules (import-linter contracts in pyproject.toml).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

## Throughput, latency and memory of the fleet against this machine's raw limits (bench/README.md).
## QUICK=1 is a smoke run with small counts.
bench: $(BENCH_STAMP)
	sh bench/setup.sh
	$(BIN)/python -m bench.run $(if $(QUICK),--quick,)

## Fault injection: worker kills, broker/database/Redis restarts, misbehaving peers, poison
## messages, SIGTERM; fails if any accepted message is lost. QUICK=1: scenarios 1, 5, 6.
chaos: install
	$(BIN)/python -m tests.chaos $(if $(QUICK),--quick,)

## Per-channel scaling across hosts: network namespaces, one vs two worker hosts, a cut link.
fleet-demo: install
	$(BIN)/python deploy/fleet_demo.py demo $(if $(MESSAGES),--messages $(MESSAGES),) $(if $(THREADS),--threads $(THREADS),)

## The in-app inbox at scale: feed, unread count, SSE delivery and stream capacity.
bench-inbox: install
	$(BIN)/python -m bench.inbox $(if $(QUICK),--quick,)

## Pictures of every console area and of the inbox widget, light and dark, into the folder the
## README shows: the console's browser tests, walking a real gateway and fleet, take them.
SCREENSHOTS ?= docs/screenshots
screenshots: install
	KAI_SCREENSHOTS=$(SCREENSHOTS) $(BIN)/pytest -q tests/gateway/test_console.py

clean:
	rm -rf $(VENV) var node_modules .pytest_cache .mypy_cache .ruff_cache
