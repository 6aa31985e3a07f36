# The few commands a newcomer needs. Each installs what it needs first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# On this machine torch 2.13.0 is a local CPU build; an unpinned torch pulls CUDA wheels.
TORCH  ?= torch==2.13.0

.PHONY: install sysdeps demo test lint bench clean

$(BIN)/cityseg: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

install: $(BIN)/cityseg

# Debian packages the tests and the fast path use: headless Chromium (report test) and jemalloc.
# Installed when apt-get can run as root; otherwise the tests that need them skip and say why.
sysdeps:
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  need=""; [ -x /usr/bin/chromium ] || need="$$need chromium"; \
	  ls /usr/lib/*/libjemalloc.so.2 >/dev/null 2>&1 || need="$$need libjemalloc2"; \
	  if [ -n "$$need" ]; then apt-get update -qq && apt-get install -y -qq $$need >/dev/null; fi; \
	else echo "sysdeps: not root or no apt-get; install chromium and libjemalloc2 yourself"; fi

demo: install
	$(BIN)/cityseg demo --out demo_out

test: install sysdeps
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) demo_out .pytest_cache
