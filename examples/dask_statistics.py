"""Dataset statistics with dask over a .bale column: per-channel mean and std of every image.

Run: .venv/bin/python examples/dask_statistics.py   (needs `pip install "dask[array]"`)

`bale.dask.from_bale` makes a lazy dask array whose chunks are the file's row groups, so each
task reads and decodes exactly one row group and the computation streams through a file of any
size with bounded memory. The result is checked against NumPy on the fully loaded column.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import dask
import numpy as np
from photo_splits import write_splits

import bale
from bale.dask import from_bale


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bale-dask-") as tmp:
        path = write_splits(Path(tmp))["train"]
        images = from_bale(path, "image")  # (rows, 64, 64, 3) uint8, lazy
        print(f"{images!r}\nchunks along rows (= row groups): {images.chunks[0]}")
        pixels = images.astype(np.float64) / 255.0
        start = time.perf_counter()
        mean, std = dask.compute(pixels.mean(axis=(0, 1, 2)), pixels.std(axis=(0, 1, 2)))
        took = time.perf_counter() - start
        print(f"per-channel mean {np.round(mean, 4)}, std {np.round(std, 4)} in {took:.2f} s")

        everything = bale.open(path)["image"][:].astype(np.float64) / 255.0
        expected = everything.mean(axis=(0, 1, 2)), everything.std(axis=(0, 1, 2))
        if not (np.allclose(mean, expected[0]) and np.allclose(std, expected[1])):
            print("dask result differs from NumPy", file=sys.stderr)
            return 1
        print("matches NumPy on the whole column")
    return 0


if __name__ == "__main__":
    sys.exit(main())
