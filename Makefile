# claim-scrubber — `make` lists the targets. `make run` and `make test` work from a fresh clone.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
KAFKA := bash deploy/kafka/kafka.sh

.DEFAULT_GOAL := help
.PHONY: help install run test check lint typecheck unit docs kafka-up kafka-down kafka-clean bench schemas k8s-check sbom lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: $(INSTALLED) ## create .venv and install the package with its dev tools

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	bash deploy/fetch-htmx.sh
	touch $@

run: install ## the worker, intake and the review page on a local broker (SECURE=1: each as its own user over SASL_SSL)
	@bash deploy/run-local.sh $(if $(SECURE),--secure)

test: install ## lint, type-check and run every test (unit and real Kafka); stops what it started
	bash deploy/run-tests.sh

check: lint typecheck ## ruff, mypy strict, import layering

lint: install ## ruff check and format check
	$(BIN)/ruff check services tests bench docs
	$(BIN)/ruff format --check services tests bench docs

typecheck: install ## mypy strict and the import-linter layer contracts
	$(BIN)/mypy
	$(BIN)/mypy docs/hooks.py
	$(BIN)/lint-imports

unit: install ## the tests that need no broker
	$(BIN)/pytest -m "not kafka" -q -n 2

docs: install ## build the documentation site strictly into build/site (a broken link fails)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	@echo "built build/site/index.html"

schemas: install ## regenerate schemas/ (JSON Schemas, AsyncAPI, RULES.md) from the code
	$(BIN)/claim-scrubber schemas --out schemas

kafka-up: ## start the local single-node Kafka on 127.0.0.1:9092 and create the topics
	$(KAFKA) up

kafka-down: ## stop the local Kafka, keeping its data
	$(KAFKA) down

kafka-clean: ## stop the local Kafka and delete its data
	$(KAFKA) clean

bench: install ## the benchmark: core, end to end and a pass-through baseline; writes bench/results.json
	bash deploy/kafka/with-broker.sh $(BIN)/python -m bench.run

k8s-check: install ## render every Kubernetes overlay offline, validate it, lint the Dockerfile
	$(BIN)/pytest -q -p no:cacheprovider tests/deploy
	$(BIN)/hadolint --no-color deploy/Dockerfile

sbom: install ## CycloneDX SBOM of the image's dependencies (from the hashed lock), offline
	mkdir -p build
	$(BIN)/cyclonedx-py requirements deploy/requirements.lock -o build/sbom.cdx.json
	@echo "written to build/sbom.cdx.json"

lock: install ## regenerate the image's hashed lock files from pyproject.toml (needs PyPI)
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-find-links \
	  --output-file deploy/requirements.lock pyproject.toml
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-find-links \
	  --extra msk --output-file deploy/requirements-msk.lock pyproject.toml

clean: kafka-clean ## remove the local broker data, the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
