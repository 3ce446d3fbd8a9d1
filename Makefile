# KAI Messaging — the commands of the README. Everything installs into .venv from this
# repository's own files (pyproject.toml, pinned by constraints.txt).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
PYTEST_ARGS ?=

.PHONY: install run test lint typecheck bench bench-inbox chaos fleet-demo clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The bench extra on top of the dev install, again only when the pins or the extras change.
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $(BENCH_STAMP)

## Start the gateway on 127.0.0.1:8000 and every channel worker, on the embedded defaults.
run: install
	$(BIN)/kai-messaging run

## The whole test suite against the local RabbitMQ, PostgreSQL and Redis.
test: install
	$(BIN)/pytest $(PYTEST_ARGS)

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

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
