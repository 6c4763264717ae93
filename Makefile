# Set-up and checks. `make demo` and `make test` work on a fresh machine with Python >= 3.10.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench bench-quick clean

# torch is pinned to 2.13.0: on these machines that version is a local CPU-only wheel, while
# any other spec downloads gigabytes of CUDA packages. The framework adapters' tests need it.
FRAMEWORKS := torch==2.13.0 torchdata==0.11.0 keras grain "dask[array,dataframe]" distributed "ray[data]" pyspark
# Loopback emulators the object-storage tests start themselves (tests/io/emulators.py): GCS from
# PyPI, Azure's Azurite from npm (skipped, with the hint, where Node is missing).
EMULATORS := gcp-storage-emulator
AZURITE := .cache/azurite

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,bench]"
	$(BIN)/python -m pip install -q $(FRAMEWORKS) $(EMULATORS)
	if command -v npm >/dev/null; then npm install -q --prefix $(AZURITE) azurite --no-audit --no-fund; fi
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

# Every benchmark is a module of the bench package, run from the repository root.
bench: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python -m bench.format_bench
	$(BIN)/python -m bench.loader_bench
	$(BIN)/python -m bench.distributed_bench
	$(BIN)/python -m bench.sampler_bench
	$(BIN)/python -m bench.random_access_bench
	$(BIN)/python -m bench.remote_loader_bench
	$(BENCH_VENV)/bin/python -m bench.remote_peers_bench
	$(BIN)/python -m bench.remote_upload_bench
	$(BIN)/python -m bench.merge_bench
	$(BIN)/python -m bench.pack_cluster_bench
	$(BIN)/python -m bench.dask_bench
	$(BIN)/python -m bench.frame_choice
	$(BIN)/python -m bench.pack_bench
	$(BIN)/python -m bench.advisor_bench
	$(BIN)/python -m bench.import_time
	$(BENCH_VENV)/bin/python -m bench.suite.run
	$(BIN)/python -m bench.report

# Small data, one round: proves every script runs. Writes *_quick reports (git-ignored), which
# bench.report leaves out of docs/BENCHMARKS.md.
bench-quick: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python -m bench.format_bench --quick
	$(BIN)/python -m bench.loader_bench --quick
	$(BIN)/python -m bench.distributed_bench --quick
	$(BIN)/python -m bench.sampler_bench --quick
	$(BIN)/python -m bench.random_access_bench --quick
	$(BIN)/python -m bench.remote_loader_bench --quick
	$(BENCH_VENV)/bin/python -m bench.remote_peers_bench --quick
	$(BIN)/python -m bench.remote_upload_bench --quick
	$(BIN)/python -m bench.merge_bench --quick
	$(BIN)/python -m bench.pack_cluster_bench --quick
	$(BIN)/python -m bench.dask_bench --quick
	$(BIN)/python -m bench.frame_choice --quick
	$(BIN)/python -m bench.pack_bench --quick
	$(BIN)/python -m bench.advisor_bench --quick
	$(BIN)/python -m bench.import_time --quick
	$(BENCH_VENV)/bin/python -m bench.suite.run --quick
	$(BIN)/python -m bench.report

clean:
	rm -rf $(VENV) $(BENCH_VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
