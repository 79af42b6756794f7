# Two commands on a fresh machine: `make demo` and `make test`.
# torch is installed first and pinned: that takes the local CPU wheel instead
# of the registry's newest build with gigabytes of CUDA packages.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-chemoe test test-fast lint clean system-packages docs-service

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

# Debian's prometheus and chromium for the service tests (apt-get as root).
system-packages:
	bash scripts/system-packages.sh

test: $(STAMP) system-packages
	$(BIN)/ruff check raycell tests jobs
	$(BIN)/python -m pytest -q --durations=30 tests

# Without the kill-and-resume and service tests (slow-marked: about 27 of 38 minutes).
test-fast: $(STAMP)
	$(BIN)/ruff check raycell tests jobs
	$(BIN)/python -m pytest -q -m "not slow" tests

# Rewrites docs/mlflow-compare.png and docs/dashboard-queries.md from real services.
docs-service: $(STAMP) system-packages
	RAYCELL_DOCS_OUT=$(CURDIR)/docs $(BIN)/python -m pytest -q tests/service/test_mlflow_server.py \
		tests/service/test_dashboards.py

lint: $(STAMP)
	$(BIN)/ruff check raycell tests jobs

clean:
	rm -rf $(VENV) results data/demo
