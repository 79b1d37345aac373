# sesamweb: `make demo` runs the whole console against a simulated pool; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PG_URL ?= postgres://postgres@127.0.0.1:5432/test
REDIS_TEST_URL ?= redis://127.0.0.1:6379/15
PYTEST_ARGS ?=

.PHONY: venv demo test test-unit test-integration bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

demo: venv
	$(BIN)/python -m sesamweb.demo

# Unit and end-to-end tier on the embedded default (SQLite, ORM broker), then the
# integration tier on PostgreSQL and Redis.
test: test-unit test-integration

test-unit: venv
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

test-integration: venv
	DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_TEST_URL) $(BIN)/python -m pytest -m integration $(PYTEST_ARGS)

bench: venv
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) var test-artifacts
