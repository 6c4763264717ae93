# Set-up and checks. `make demo` and `make test` work on a fresh machine with Python >= 3.10.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench bench-quick clean

# torch is pinned to 2.13.0: on these machines that version is a local CPU-only wheel, while
# any other spec downloads gigabytes of CUDA packages. The framework adapters' tests need it.
FRAMEWORKS := torch==2.13.0 keras grain "dask[array]"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,bench]"
	$(BIN)/python -m pip install -q $(FRAMEWORKS)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/format_bench.py
	$(BIN)/python bench/loader_bench.py
	$(BIN)/python bench/report.py

bench-quick: $(STAMP)
	$(BIN)/python bench/format_bench.py --quick
	$(BIN)/python bench/loader_bench.py --quick

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
