# Hone: one entry point for setting up, running and testing everything on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := python3.11
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo python3.11 -m uv)
STACK := deploy/local/stack
PYTEST := .venv/bin/pytest

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

.PHONY: setup
setup: ## install uv, the Python workspace (.venv) and the local stack's servers (cached)
	@python3.11 -m uv --version >/dev/null 2>&1 || python3.11 -m pip install -q "uv==$(UV_VERSION)"
	python3.11 -m uv sync --all-packages --frozen
	$(STACK) install
	deploy/tools/install.sh
	tests/e2e/labeling_page/install.sh

.PHONY: up down status
up: ## start Kafka, MinIO, PostgreSQL, TorchServe and Prometheus on 127.0.0.1
	$(STACK) up
down: ## stop everything the local stack started
	$(STACK) down
status: ## show what the local stack runs
	$(STACK) status

.PHONY: lint
lint: ## ruff and mypy
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy libs/common/src services/*/src tools/*/src

.PHONY: test
test: setup up lint ## everything CI runs: set up, start the stack, lint, all test tiers
	$(PYTEST) -p no:cacheprovider -ra

.PHONY: test-unit test-integration test-e2e
test-unit: ## unit tests only (no servers)
	$(PYTEST) -m unit -q
test-integration: up ## integration tests against the local stack
	$(PYTEST) -m integration -ra
test-e2e: up ## end-to-end tests against the local stack
	$(PYTEST) -m e2e -ra

.PHONY: demo
demo: setup up ## the closed-loop demo on the local stack
	.venv/bin/python -m hone_demo
