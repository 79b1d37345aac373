# sesamweb: `make demo` runs the whole console against a simulated pool; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Set by tests/fixtures/services.py for `make test` (its own throwaway servers); the defaults
# are the machine's own services, for running one tier by hand.
PG_URL ?= postgres://postgres@127.0.0.1:5432/test
REDIS_TEST_URL ?= redis://127.0.0.1:6379/15
PYTEST_ARGS ?=

.PHONY: venv demo test test-unit test-postgres test-integration bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

demo: venv
	$(BIN)/python -m sesamweb.demo

# Three tiers: everything (browser tests included) on the embedded default (SQLite, ORM
# broker, database relay for live updates); every database-backed test again on PostgreSQL;
# then the tests written for PostgreSQL + Redis (Redis broker and channel layer, processes
# sharing the database). tests/fixtures/services.py starts a throwaway PostgreSQL and Redis on
# free ports for the last two (or uses PG_URL / REDIS_TEST_URL), and says what is missing.
test: venv
	$(BIN)/python -m tests.fixtures.services $(MAKE) --no-print-directory

test-unit: venv
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

DB_TESTS := tests/sesamweb tests/xenpools tests/backups --ignore=tests/backups/repository --ignore=tests/backups/formats

test-postgres: venv
	DATABASE_URL=$(PG_URL) $(BIN)/python -m pytest -m "not integration and not e2e" $(DB_TESTS) $(PYTEST_ARGS)

test-integration: venv
	DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_TEST_URL) $(BIN)/python -m pytest -m integration $(PYTEST_ARGS)

bench: venv
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) var test-artifacts
