#!/usr/bin/env bash
# Builds .venv-bench: bale plus every tool the comparative suite measures, kept apart from .venv
# because the tools' dependencies conflict with each other and with bale's test environment.
# Each tool is installed on its own; one that fails is reported and skipped (the suite then
# records it as "not installed", with the reason from bench/suite/install_log/).
#
#     bash bench/suite/setup_env.sh          # from the repository root
set -u
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
VENV=.venv-bench
C="-c bench/suite/constraints.txt"
LOG=bench/out/suite_install
mkdir -p "$LOG"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
# bale itself, the data generators' needs, the plots, torch (CPU wheel, pinned).
$PIP install -q $C -e ".[bench,images,test]" matplotlib psutil "torch==2.13.0" || exit 1

failed=()
try() {  # try NAME PIP-ARGS...: install one tool, keep its log, never stop the script
    local name=$1; shift
    if $PIP install $C "$@" >"$LOG/$name.log" 2>&1; then
        echo "installed $name"
    else
        echo "FAILED $name (see $LOG/$name.log)"; failed+=("$name")
    fi
}
try h5py h5py
try zarr "zarr>=3"
try blosc2 blosc2
try webdataset webdataset
try streaming mosaicml-streaming
try litdata litdata
try lance pylance
try hf_datasets datasets
try grain array-record grain
try ffcv ffcv

# Repairs, each forced by a conflict (the report lists them):
# - mosaicml-streaming pins transformers<5, whose releases need huggingface-hub<1, while
#   datasets 5 needs huggingface-hub>=1.31. streaming only imports transformers.BatchEncoding,
#   which transformers 5 still has: install transformers 5 without its pin check.
$PIP install -q $C --no-deps "transformers>=5" >"$LOG/transformers.log" 2>&1
$PIP install -q $C "tokenizers>=0.23.1,<0.24" typer >>"$LOG/transformers.log" 2>&1
# - torchvision wheels on PyPI are CUDA builds: next to the CPU torch their operators fail to
#   load and `import torchvision` raises. Nothing measured here needs it (litdata imports it only
#   if installed; streaming's vision datasets are stubbed by the adapter), so remove it.
$PIP uninstall -y -q torchvision
echo "failed: ${failed[*]:-none}"
