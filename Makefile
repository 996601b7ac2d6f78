# The two commands of the README: `make demo` and `make test`. Everything else is a step of theirs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-dev walkthrough bench bench-audit bench-linking bench-education bench-policy

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## Start the gateway with a synthetic partnership on SQLite, at http://127.0.0.1:8000
demo: $(VENV)/.installed
	$(BIN)/gateway demo

## Install the test dependencies and run the whole suite (SQLite, or GATEWAY_TEST_DATABASE_URL).
## On SQLite it measures coverage and fails below 100% branch coverage of audit/ and policies/. On
## PostgreSQL it runs the same tests without measuring (tracing doubles the run; every line the gate
## needs is reached on SQLite); COVERAGE=1 measures and gates there too.
test: $(VENV)/.installed-dev
	$(BIN)/ruff check gateway adapters policies audit tests bench
	$(BIN)/mypy
	@if [ -z "$(GATEWAY_TEST_DATABASE_URL)" ] || [ -n "$(COVERAGE)" ]; then \
	  set -x; \
	  GATEWAY_REQUIRE_CONFORMANCE=1 $(BIN)/python -m pytest --cov --cov-branch --cov-report=term:skip-covered $(PYTEST_ARGS) && \
	  $(BIN)/python -m coverage report --include='audit/*,policies/*' --fail-under=100 --show-missing; \
	else \
	  set -x; \
	  GATEWAY_REQUIRE_CONFORMANCE=1 $(BIN)/python -m pytest $(PYTEST_ARGS); \
	fi

## Run the README's curl walk-through against a fresh demo (used by CI)
walkthrough: $(VENV)/.installed
	bash scripts/check_walkthrough.sh

## Measure ingest and views, then the audit log (bench-audit), linking (bench-linking), the attendance CSV import
## (bench-education) and the policy engine (bench-policy, in-process), each on its own scratch
## PostgreSQL database (GATEWAY_BENCH_DATABASE_URL); reports in var/bench-*latest.json; fails if any does
bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench; ingest=$$?; $(BIN)/python -m bench audit; audit=$$?; \
	$(BIN)/python -m bench linking; linking=$$?; $(BIN)/python -m bench education; education=$$?; \
	$(BIN)/python -m bench policy; policy=$$?; \
	[ $$ingest -eq 0 ] && [ $$audit -eq 0 ] && [ $$linking -eq 0 ] && [ $$education -eq 0 ] && [ $$policy -eq 0 ]

## Measure the audit log alone: appends from 4 writer processes, verify of 1,000,000 events, inclusion proofs served
bench-audit: $(VENV)/.installed-dev
	$(BIN)/python -m bench audit

## Link synthetic populations of 10,000 and 100,000 children (var/bench-linking-latest.json)
bench-linking: $(VENV)/.installed-dev
	$(BIN)/python -m bench linking

## Decide a 500-item view in-process for one viewer, each purpose (var/bench-policy-latest.json)
bench-policy: $(VENV)/.installed-dev
	$(BIN)/python -m bench policy

## Import a 10,000-row attendance CSV over HTTP (var/bench-education-latest.json)
bench-education: $(VENV)/.installed-dev
	$(BIN)/python -m bench education
