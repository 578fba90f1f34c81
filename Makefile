# LabelVault: `make run` starts the platform, `make test` runs the whole suite.
# Both create .venv and install what they need on a fresh machine (Python 3.11+, pip, gcc).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test
export XDG_RUNTIME_DIR ?= /tmp/labelvault-runtime-$(shell id -u)

.PHONY: run test lint setup setup-test browser-deps bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(TSTAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(STAMP)

setup-test: $(TSTAMP)
	@mkdir -p -m 700 $(XDG_RUNTIME_DIR)

# Browser tests drive Debian's chromium (Playwright's own browser download is not possible here).
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: the browser tests will be skipped (apt-get install chromium)"; fi; \
	fi

run: setup
	@mkdir -p -m 700 $(XDG_RUNTIME_DIR)
	$(BIN)/labelvault serve

test: setup-test browser-deps
	$(BIN)/pytest -q

lint: setup-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: setup-test
	$(BIN)/python bench/audit_bench.py

clean:
	rm -rf $(VENV) .labelvault test-artifacts .mypy_cache .ruff_cache .hypothesis
