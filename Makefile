# The few commands a newcomer needs. Each installs what it needs first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The torch requirement pip installs first: a pin, or a pin with --index-url (README, Installing).
TORCH  ?= torch==2.13.0

.PHONY: install tcmalloc sysdeps demo test lint bench clean

$(BIN)/cityseg: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

install: $(BIN)/cityseg tcmalloc

# tcmalloc, the allocator the CPU commands take where it is installed (cityseg.runtime.allocator
# looks for the same library): installed when apt-get can run as root; otherwise one line says
# what it would gain, and the commands run with glibc's allocator, tuned.
TCMALLOC_LIBRARY := /usr/lib/*/libtcmalloc_minimal.so.4
TCMALLOC_GAIN    := makes CPU training epochs up to 1.16x faster (README, Installing)
tcmalloc:
	@if ls $(TCMALLOC_LIBRARY) >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq libtcmalloc-minimal4 >/dev/null) || \
	  echo "tcmalloc: apt-get could not install libtcmalloc-minimal4, which $(TCMALLOC_GAIN)"; \
	else echo "tcmalloc: not root or no apt-get; apt install libtcmalloc-minimal4 $(TCMALLOC_GAIN)"; fi

# The Debian package the tests use: headless Chromium (the report test). Installed when apt-get
# can run as root; otherwise the test that needs it skips and says why.
sysdeps: tcmalloc
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  [ -x /usr/bin/chromium ] || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null); \
	else echo "sysdeps: not root or no apt-get; install chromium yourself"; fi

demo: install
	$(BIN)/cityseg demo --out demo_out

test: install sysdeps
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/lint-imports

# One training epoch of configs/tiny.yaml's network: a notebook-style loop, cityseg's data path in
# float32 and cityseg's default, each in its own process; prints the table and ratios (BENCHMARKS.md).
bench: install
	$(BIN)/python benchmarks/bench_epoch.py --preset tiny

clean:
	rm -rf $(VENV) demo_out .pytest_cache
