# vipsgate: `make run` starts a development server, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: run test lint bench loadtest memcheck install clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "vipsgate needs Python 3.11+"'
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  rm -rf $(VENV); \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; \
	  fi; \
	  $(PYTHON) -m venv $(VENV) || { echo "Install python3-venv (apt-get install python3-venv)"; exit 1; }; }
	@$(BIN)/python -m pip install -q --upgrade pip uv

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/uv pip install -q -p $(BIN)/python -e '.[test,bench]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	VIPSGATE_PLAYGROUND=1 $(BIN)/vipsgate serve $(ARGS)

test: $(STAMP)
	$(BIN)/ruff check proxy tests loadtest
	$(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check proxy tests loadtest

bench: $(STAMP)
	$(BIN)/python loadtest/bench.py $(ARGS)

loadtest: $(STAMP)
	$(BIN)/python loadtest/run_locust.py $(ARGS)

memcheck: $(STAMP)
	$(BIN)/python loadtest/memcheck.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts
