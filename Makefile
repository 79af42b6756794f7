# Two commands on a fresh machine: `make demo` and `make test`.
# torch is installed first and pinned: that takes the local CPU wheel instead
# of the registry's newest build with gigabytes of CUDA packages.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-chemoe test test-fast lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/raycell tahoe --config demo --all

demo-chemoe: $(STAMP)
	$(BIN)/raycell chemoe --config demo

test: $(STAMP)
	$(BIN)/ruff check raycell tests
	$(BIN)/python -m pytest -q tests

# Without the kill-and-resume tests (about 8 minutes less).
test-fast: $(STAMP)
	$(BIN)/ruff check raycell tests
	$(BIN)/python -m pytest -q -m "not slow" tests

lint: $(STAMP)
	$(BIN)/ruff check raycell tests

clean:
	rm -rf $(VENV) results data/demo
