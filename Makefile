# vipsgate: `make run` starts a development server, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: run test lint bench loadtest memcheck install clean browser redis emulators

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "vipsgate needs Python 3.11+"'
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  rm -rf $(VENV); \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; \
	  fi; \
	  $(PYTHON) -m venv $(VENV) || { echo "Install python3-venv (apt-get install python3-venv)"; exit 1; }; }

# uv (from PyPI, into the venv) installs the project and its test tools quickly
$(STAMP): pyproject.toml | $(BIN)/python
	@$(BIN)/python -m uv --version >/dev/null 2>&1 || { \
	  $(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip >/dev/null; \
	  $(BIN)/python -m pip install -q --upgrade pip uv; }
	$(BIN)/python -m uv pip install -q -p $(BIN)/python -e '.[test,bench]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	VIPSGATE_PLAYGROUND=1 $(BIN)/vipsgate serve $(ARGS)

# Debian's chromium for the browser tests (tests/test_browser.py). Never fails: without
# it those tests skip. Playwright drives it, so no browser download is needed.
browser:
	@[ -x /usr/bin/chromium ] || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian's chromium for the browser tests..."; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 \
	      && apt-get install -y -qq chromium >/dev/null 2>&1; } \
	      || echo "Could not install chromium: the browser tests will be skipped"; \
	  else \
	    echo "Chromium not available: install Debian's chromium package (browser tests skip)"; \
	  fi; }

# Debian's redis-server for the shared-cache tests (tests/test_tier*.py), which start
# their own server on a free port and stop it. Never fails: without it those tests skip.
redis:
	@command -v redis-server >/dev/null || command -v valkey-server >/dev/null || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian's redis-server for the shared-cache tests..."; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq redis-server >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 \
	      && apt-get install -y -qq redis-server >/dev/null 2>&1; } \
	      || echo "Could not install redis-server: the Redis tier tests will be skipped"; \
	  else \
	    echo "redis-server not available: install Debian's redis-server package (Redis tier tests skip)"; \
	  fi; }

# Azurite (npm), the Azure Blob Storage emulator of the abs:// and abs-tier tests, into
# .emulators/ (git-ignored); the tests start it on a free port and stop it. Without npm,
# Debian's npm is installed when this runs as root. Never fails: without npm or the
# registry those tests skip. (The GCS emulator is a Python package of the test extra.)
AZURITE := 3.37.0
emulators:
	@[ -x .emulators/node_modules/.bin/azurite-blob ] || { \
	  if ! command -v npm >/dev/null && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian's npm for the Azure Blob Storage emulator..."; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq npm >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 \
	      && apt-get install -y -qq npm >/dev/null 2>&1; } || true; \
	  fi; \
	  if command -v npm >/dev/null; then \
	    echo "Installing Azurite $(AZURITE) into .emulators/ for the Azure Blob Storage tests..."; \
	    npm install --prefix .emulators --no-audit --no-fund --loglevel=error \
	      --fetch-timeout=60000 --fetch-retries=1 --no-save azurite@$(AZURITE) >/dev/null 2>&1 \
	      || echo "Could not install Azurite: the Azure Blob Storage tests will be skipped"; \
	  else \
	    echo "npm not available: install Node.js and npm (Azure Blob Storage tests skip)"; \
	  fi; }

test: lint browser redis emulators
	$(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check proxy tests loadtest
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python loadtest/bench.py $(ARGS)

loadtest: $(STAMP)
	$(BIN)/python loadtest/run_locust.py $(ARGS)

memcheck: $(STAMP)
	$(BIN)/python loadtest/memcheck.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts .emulators
