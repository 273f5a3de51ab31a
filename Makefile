# tradeflow: the README's commands. Every target sets up .venv first (uv, from uv.lock).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv must compile bytecode here: without .pyc files the stack imports about twice as slowly.
export UV_COMPILE_BYTECODE := 1
export UV_LINK_MODE := copy
# Prefect keeps its home and database inside the project's data folder, never in $HOME, and
# nothing reaches for the network to report telemetry.
export PREFECT_HOME := $(CURDIR)/data/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_LOGGING_LEVEL ?= WARNING
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1

VENV := .venv
PY := $(VENV)/bin/python
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)

.PHONY: help setup run test bench lint ui serve deploy worker mlflow chaos clean
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(UV):
	@echo "uv not found: installing it into .tools/ with pip"
	python3 -m venv .tools && .tools/bin/pip install --quiet uv

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python 3.11
	@mkdir -p data/prefect
	@touch $@

setup: $(VENV)/.installed ## Create .venv from the lock file

run: setup ## The main job offline: ingest, validate, snapshot, train, backtest (TRADE=60 adds paper trading)
	$(PY) -m tradeflow.cli run $(if $(TRADE),--trade-seconds $(TRADE))

test: setup ## Run the whole test suite
	$(PY) -m pytest

bench: setup ## Benchmarks: pipeline vs bare ccxt loop, and a second run vs the first (ratios)
	$(PY) -m bench

lint: setup ## ruff, mypy (strict on the core) and import-linter layering contracts
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

serve: setup ## Every schedule of prefect.yaml from one process (uses the server of make ui, or starts one)
	$(PY) -m tradeflow.cli serve

deploy: setup ## Register the deployments with the process work pool "tradeflow" (needs a server: make ui)
	$(PY) -m tradeflow.cli deploy

worker: setup ## A process worker for the "tradeflow" work pool (needs a server: make ui)
	PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:4200/api} $(VENV)/bin/prefect worker start --pool tradeflow

mlflow: setup ## The MLflow UI on http://127.0.0.1:5000, over this project's tracking store
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/data/mlflow.db --host 127.0.0.1 --port 5000

ui: setup ## The Prefect UI on http://127.0.0.1:4200, over this project's runs
	$(VENV)/bin/prefect server start --host 127.0.0.1

chaos: setup ## Ingest one pinned window cleanly and through chaos venues; compare content hashes
	@end=$$(date -u +%Y-%m-%dT00:00:00); rm -rf data/chaos-check; \
	$(PY) -m tradeflow.cli ingest --no-progress --end $$end --storage data/chaos-check/clean --faults clean && \
	$(PY) -m tradeflow.cli ingest --no-progress --end $$end --storage data/chaos-check/chaos --faults chaos && \
	$(PY) -m tradeflow.cli lake compare data/chaos-check/clean data/chaos-check/chaos

clean: ## Remove .venv and the data folder
	rm -rf $(VENV) .tools data
