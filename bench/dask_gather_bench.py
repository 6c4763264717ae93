"""bale.dask.from_bale before and after gathers by take: a shuffled batch and a mean over dask.

    .venv/bin/python -m bench.dask_gather_bench [--rows 12000] [--repeats 7]

Writes 64x64x3 uint8 images (bench.photo_data, ~150 MB at the default 12,000 rows) to a bale file
with the default layout, to one written with ``random_access=True``, and to a ``.npy`` file;
then, in one process, with the files in the page cache and dask's default threaded scheduler,
times ``x[perm[:64]].compute()`` and ``x.mean(axis=0).compute()`` for the ``from_bale`` of
commit BASELINE (one chunk per row group, read whole by ``map_blocks``), the current
``from_bale``, and ``da.from_array(np.load(path, mmap_mode="r"))``. Medians of ``--repeats``
runs taken round-robin, after one warm-up each. Prints a table; writes no report.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import dask
import dask.array as da
import numpy as np

import bale
from bale.dask import from_bale
from bench.photo_data import uint8_images
from bench.results import OUT, ROOT

#: The last commit whose from_bale read one row group per chunk and gathered through whole chunks.
BASELINE = "16c6074"
WORK = OUT / "dask_gather"
BATCH = 64


def baseline_module(revision: str) -> ModuleType:
    """``bale.adapters.dask`` as it was at ``revision``, imported from a scratch file."""
    source = subprocess.run(
        ["git", "show", f"{revision}:src/bale/adapters/dask.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = WORK / "baseline_dask_adapter.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_dask_adapter", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_files(rows: int) -> dict[str, Path]:
    WORK.mkdir(parents=True, exist_ok=True)
    images = uint8_images(rows, seed=0)
    files = {
        "default": WORK / "images.bale",
        "random_access": WORK / "images-ra.bale",
        "npy": WORK / "images.npy",
    }
    bale.write(files["default"], {"img": images}, overwrite=True)
    bale.write(files["random_access"], {"img": images}, overwrite=True, random_access=True)
    np.save(files["npy"], images)
    return files


def median_ms(jobs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    for job in jobs.values():
        job()  # warm-up: imports, footers, the file in the page cache
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, job in jobs.items():
            t0 = time.perf_counter()
            job()
            times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=12_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the old adapter")
    args = parser.parse_args()
    files = write_files(args.rows)
    old = baseline_module(args.baseline)
    perm = np.random.default_rng(1).permutation(args.rows)[:BATCH]
    npy = da.from_array(np.load(files["npy"], mmap_mode="r"))
    expected = np.load(files["npy"], mmap_mode="r")[perm]
    print(
        f"{args.rows} rows of 64x64x3 uint8, {files['npy'].stat().st_size / 1e6:.0f} MB; "
        f"{os.cpu_count()} cores, dask {dask.__version__}, Python {sys.version.split()[0]}, "
        f"array.chunk-size {dask.config.get('array.chunk-size')}; medians of {args.repeats}, ms"
    )
    print(f"{'file':<15}{'reader':<12}{'chunks':>8}{'x[perm64]':>12}{'mean(0)':>12}")
    for layout in ("default", "random_access"):
        arrays = {
            "old": old.from_bale(files[layout], "img"),
            "new": from_bale(files[layout], "img"),
            "npy": npy,
        }
        for array in arrays.values():
            np.testing.assert_array_equal(array[perm].compute(), expected)
        gathers = median_ms(
            {k: (lambda a=a: a[perm].compute()) for k, a in arrays.items()}, args.repeats
        )
        means = median_ms(
            {k: (lambda a=a: a.mean(axis=0).compute()) for k, a in arrays.items()}, args.repeats
        )
        for name, array in arrays.items():
            print(
                f"{layout:<15}{name:<12}{len(array.chunks[0]):>8}"
                f"{gathers[name]:>12.1f}{means[name]:>12.1f}"
            )


if __name__ == "__main__":
    main()
