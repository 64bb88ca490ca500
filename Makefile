# The two commands: `make run` and `make test`. Everything else is a helper for them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
CONTACTS ?= 1000000
PYTEST_WORKERS ?= 2

.PHONY: run test test-integration bench lint messages stop-db clean

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

# ruff; the layers contract (pyproject.toml [tool.importlinter]); types (mypy, with a baseline of old
# modules in pyproject.toml that only shrinks: .ci/mypy_baseline.py); function-level imports of
# project modules say why (.ci/check_local_imports.py). Each runs and reports even when one fails.
lint: $(VENV)/.dev-installed
	@status=0; \
	$(BIN)/ruff check . || status=1; \
	$(BIN)/lint-imports || status=1; \
	$(BIN)/mypy || status=1; \
	$(BIN)/python .ci/check_local_imports.py || status=1; \
	exit $$status

# The translation catalogues: the root locale/ (templates/ at the root) and each app's <app>/locale,
# updated from the code (GNU gettext's xgettext/msgmerge) and compiled to the committed .mo files.
# `make messages APPS="contacts ."` updates only those (the root catalogue is ".").
messages: $(VENV)/.dev-installed
	$(BIN)/python -m marketing_hub.catalogues $(APPS)

stop-db:
	$(BIN)/python -m marketing_hub.embedded_db stop
