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

# The comparative suite (bench/suite) runs in its own environment: the tools it compares
# (WebDataset, Streaming, LitData, Lance, HF datasets, ArrayRecord, ...) have conflicting pins.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): pyproject.toml bench/suite/setup_env.sh bench/suite/constraints.txt
	PYTHON=$(PYTHON) bash bench/suite/setup_env.sh
	touch $@

bench: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python bench/format_bench.py
	$(BIN)/python bench/loader_bench.py
	$(BIN)/python bench/pack_bench.py
	$(BIN)/python bench/advisor_bench.py
	$(BENCH_VENV)/bin/python -m bench.suite.run
	$(BIN)/python bench/report.py

bench-quick: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python bench/format_bench.py --quick
	$(BIN)/python bench/loader_bench.py --quick
	$(BIN)/python bench/pack_bench.py --quick
	$(BENCH_VENV)/bin/python -m bench.suite.run --quick
	$(BIN)/python bench/report.py
clean:
	rm -rf $(VENV) $(BENCH_VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
