# The set-up commands of the README: `make demo`, `make test` and `make test-fast`. Each creates .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Test workers (pytest-xdist): one per core; each starts its own embedded PostgreSQL.
WORKERS ?= auto
# The edit-test loop: no PostgreSQL, no browser, nothing that takes seconds (tests/conftest.py marks them).
FAST := not db and not browser and not slow

.PHONY: install demo test test-fast lint bench reset clean

# pip prints each package it collects and installs: the first install takes 2-3 minutes (PyTorch).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@echo "installing recsys and its dependencies into $(VENV) (first time: 2-3 minutes) ..."
	$(BIN)/pip install --progress-bar on -e ".[test]"
	touch $(STAMP)
	@echo "installed: run 'source $(VENV)/bin/activate' to get the recsys command (or call $(BIN)/recsys)"

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/recsys demo

lint: $(STAMP)
	$(BIN)/ruff check recsys api tests bench migrations
	$(BIN)/lint-imports

# One line per test file as it finishes; a file runs whole on one worker (--dist loadfile), since
# some keep a module-wide world in the worker's database. --no-loadscope-reorder keeps the order of
# collection, where tests/conftest.py puts the longest files first (xdist would sort by test count).
test: lint
	$(BIN)/python -m pytest -q -n $(WORKERS) --dist loadfile --no-loadscope-reorder --progress-files

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "$(FAST)" --progress-files

# The database and the runs' reports only (.recsys, the demo's included); .venv stays.
reset:
	@if [ -f .recsys/pg/postmaster.pid ] || [ -f .recsys/demo/pg/postmaster.pid ]; then \
	    echo "make reset: a PostgreSQL is running in .recsys (recsys serve or demo?): stop it first" >&2; exit 2; fi
	rm -rf .recsys

# Everything `make` made: .venv and .recsys.
clean:
	rm -rf $(VENV) .recsys
