# vipsgate: `make run` starts a development server, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: run test lint bench bench-ipx loadtest memcheck install clean browser redis node \
	clients emulators image-check lock dist

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


# Debian's nodejs for the CDN recipe tests (tests/test_cdn.py). Never fails: without it
# those tests skip.
node:
	@command -v node >/dev/null || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian's nodejs for the CDN recipe tests..."; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq nodejs >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 \
	      && apt-get install -y -qq nodejs >/dev/null 2>&1; } \
	      || echo "Could not install nodejs: the CDN recipe tests will be skipped"; \
	  else \
	    echo "node not available: install Debian's nodejs package (CDN recipe tests skip)"; \
	  fi; }

# imgproxy's official Node.js URL builder (npm @imgproxy/imgproxy-node, pinned in
# tests/clients/package.json) for tests/test_third_party_clients.py, with Debian's
# nodejs and npm when they are missing. Never fails: without them that test skips.
clients:
	@[ -d tests/clients/node_modules/@imgproxy/imgproxy-node ] || { \
	  command -v npm >/dev/null || { \
	    if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	      echo "Installing Debian's nodejs and npm for the client tests..."; \
	      export DEBIAN_FRONTEND=noninteractive; \
	      apt-get install -y -qq nodejs npm >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 \
	        && apt-get install -y -qq nodejs npm >/dev/null 2>&1; }; \
	    fi; }; \
	  if command -v npm >/dev/null; then \
	    npm install --prefix tests/clients --no-audit --no-fund --no-package-lock --silent \
	      >/dev/null 2>&1 || echo "Could not install @imgproxy/imgproxy-node: its test will be skipped"; \
	  else \
	    echo "npm not available: the @imgproxy/imgproxy-node test will be skipped"; \
	  fi; }

# Azurite, the Azure Blob Storage emulator of the abs:// and abs-tier tests (npm azurite,
# pinned in tests/emulators/package.json; the tests start it on a free port and stop it),
# with Debian's nodejs and npm when they are missing. Never fails: without them those
# tests skip. (The GCS emulator is a Python package of the test extra.)
emulators:
	@[ -x tests/emulators/node_modules/.bin/azurite-blob ] || { \
	  command -v npm >/dev/null || { \
	    if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	      echo "Installing Debian's nodejs and npm for the Azure Blob Storage emulator..."; \
	      export DEBIAN_FRONTEND=noninteractive; \
	      apt-get install -y -qq nodejs npm >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 \
	        && apt-get install -y -qq nodejs npm >/dev/null 2>&1; }; \
	    fi; }; \
	  if command -v npm >/dev/null; then \
	    echo "Installing Azurite into tests/emulators/ for the Azure Blob Storage tests..."; \
	    npm install --prefix tests/emulators --no-audit --no-fund --no-package-lock --silent \
	      --fetch-timeout=60000 --fetch-retries=1 >/dev/null 2>&1 \
	      || echo "Could not install Azurite: the Azure Blob Storage tests will be skipped"; \
	  else \
	    echo "npm not available: the Azure Blob Storage tests will be skipped"; \
	  fi; }

test: lint browser redis node clients emulators
	$(BIN)/python -m pytest $(ARGS)
	@$(MAKE) --no-print-directory image-check

lint: $(STAMP)
	$(BIN)/ruff check proxy tests loadtest tools
	$(BIN)/mypy

# Builds the container image on a Debian base made here and runs it as production would
# (tools/image_check.py). Skipped with the reason where it cannot run (not root, no apt,
# no Docker daemon possible); IMAGE_CHECK=no skips it, IMAGE_CHECK=yes makes a skip fail.
IMAGE_CHECK ?= auto
image-check: $(STAMP)
	@if [ "$(IMAGE_CHECK)" = no ]; then echo "image-check: skipped (IMAGE_CHECK=no)"; \
	else $(BIN)/python tools/image_check.py $(if $(filter yes,$(IMAGE_CHECK)),--require); fi

# requirements.lock: every dependency of the image pinned with hashes, for any Linux and
# Python 3.11+, from pyproject.toml (and its build requirement). Run after changing them.
lock: $(STAMP)
	$(BIN)/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", \
	  "rb"))["build-system"]["requires"]))' | $(BIN)/python -m uv pip compile pyproject.toml - \
	  --extra gcs --extra azure \
	  --universal --python-version 3.11 --generate-hashes --custom-compile-command "make lock" \
	  --quiet -o requirements.lock

# The wheel and the sdist, in dist/ (install with: pip install 'dist/vipsgate-*.whl[django]')
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m uv build --quiet --out-dir dist
	@ls dist

# ipx (npm ipx 3.1.1 on sharp, pinned in loadtest/ipx/package-lock.json), a peer of
# `make bench`, with Debian's nodejs and npm when they are missing. Never fails: without
# them the bench skips ipx and says so.
bench-ipx:
	@[ -f loadtest/ipx/node_modules/ipx/package.json ] || { \
	  command -v npm >/dev/null || { \
	    if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	      echo "Installing Debian's nodejs and npm for ipx, a peer of make bench..."; \
	      export DEBIAN_FRONTEND=noninteractive; \
	      apt-get install -y -qq nodejs npm >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 \
	        && apt-get install -y -qq nodejs npm >/dev/null 2>&1; }; \
	    fi; }; \
	  if command -v npm >/dev/null; then \
	    echo "Installing ipx into loadtest/ipx/ (npm ci, once)..."; \
	    npm ci --prefix loadtest/ipx --no-audit --no-fund --silent \
	      --fetch-timeout=60000 --fetch-retries=1 >/dev/null 2>&1 \
	      || echo "Could not install ipx: make bench will skip it"; \
	  else \
	    echo "npm not available: make bench will skip ipx"; \
	  fi; }

# The peers `make bench` compares vipsgate with; `make bench PEERS=` measures vipsgate
# against its in-process limits instead.
PEERS ?= thumbor,ipx
bench: $(STAMP) $(if $(findstring ipx,$(PEERS)),bench-ipx)
	$(BIN)/python loadtest/bench.py $(if $(PEERS),--peers $(PEERS)) $(ARGS)

loadtest: $(STAMP)
	$(BIN)/python loadtest/run_locust.py $(ARGS)

memcheck: $(STAMP)
	$(BIN)/python loadtest/memcheck.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts dist build tests/clients/node_modules \
	  tests/emulators/node_modules loadtest/ipx/node_modules
