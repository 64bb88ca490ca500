# The two commands: `make run` and `make test`. Everything else is a helper for them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
CONTACTS ?= 1000000
PYTEST_WORKERS ?= 2

.PHONY: run test test-integration bench lint stop-db clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.installed $@

run: $(VENV)/.installed
	PORT=$(PORT) $(BIN)/python -m marketing_hub.run

test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -p no:cacheprovider --create-db

test-integration: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -m integration -p no:cacheprovider --create-db

bench: $(VENV)/.installed
	@$(BIN)/python -m bench.run --contacts $(CONTACTS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .

stop-db:
	$(BIN)/python -m marketing_hub.embedded_db stop
