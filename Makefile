# The few commands a newcomer needs. Each installs what it needs first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# On this machine torch 2.13.0 is a local CPU build; an unpinned torch pulls CUDA wheels.
TORCH  ?= torch==2.13.0

.PHONY: install demo test lint bench clean

$(BIN)/cityseg: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

install: $(BIN)/cityseg

demo: install
	$(BIN)/cityseg demo --out demo_out

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) demo_out .pytest_cache
