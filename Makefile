# The few commands a newcomer needs. Each installs what it needs first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The torch requirement pip installs first: a pin, or a pin with --index-url (README, Installing).
TORCH  ?= torch==2.13.0

.PHONY: install sysdeps demo test lint bench clean

$(BIN)/cityseg: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

install: $(BIN)/cityseg

# The Debian package the tests use: headless Chromium (the report test). Installed when apt-get
# can run as root; otherwise the test that needs it skips and says why.
sysdeps:
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

clean:
	rm -rf $(VENV) demo_out .pytest_cache
