# The two set-up commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

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

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .recsys
