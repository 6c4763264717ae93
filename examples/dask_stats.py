"""A dask.distributed cluster writes a .bale file and computes statistics over it, out of core.

Run: .venv/bin/python examples/dask_stats.py   (needs `pip install "dask[array,dataframe,distributed]"`)

1. A local cluster of 2 worker processes (on a real cluster: ``Client("tcp://scheduler:8786")``,
   and paths every worker sees, or URLs) computes images chunk by chunk and writes them with
   ``bale.dask.to_bale``: one part per chunk, merged into one file on the client.
2. Per-channel mean and std of every pixel, the use the seed thread made of ``bcolz.eval`` /
   numexpr: ``from_bale`` gives a lazy array whose chunks are whole row groups, so each task
   decodes its row groups once and no process holds the column.
3. The label column as a dask DataFrame (``read_bale_dataframe``): a value count.

Every result is checked against NumPy / pandas on the fully loaded data.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster

import bale
from bale.dask import from_bale, read_bale_dataframe, to_bale
from bale.ops.verify import verify

ROWS, SHAPE, CHUNK = 8192, (32, 32, 3), 1024


def make_images(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
    """Images for the rows of this chunk: the same whoever computes them."""
    first = block_info[None]["array-location"][0][0] if block_info else 0
    out = np.empty((len(block), *SHAPE), np.uint8)
    for i in range(len(block)):
        rng = np.random.default_rng(first + i)
        out[i] = rng.integers(0, 256, SHAPE, dtype=np.uint8) // (1, 2, 4)  # channels differ
    return out


def main() -> int:
    with (
        tempfile.TemporaryDirectory(prefix="bale-dask-") as tmp,
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # metrics on a free port
        ) as cluster,
        Client(cluster),
    ):
        target = Path(tmp) / "images.bale"
        rows = da.arange(ROWS, chunks=CHUNK)
        images = rows.map_blocks(
            make_images, dtype=np.uint8, new_axis=[1, 2, 3], chunks=(CHUNK, *SHAPE)
        )
        start = time.perf_counter()
        report = to_bale({"image": images, "label": rows % 10}, target)
        print(
            f"to_bale: {report.rows} rows from {len(report.sources)} parts in {time.perf_counter() - start:.2f} s"
        )

        # Chunks of whole row groups of about array.chunk-size each (128 MiB by default; smaller
        # here so that this small file is read by several tasks, as a large one would be).
        with dask.config.set({"array.chunk-size": "4MiB"}):
            x = from_bale(target, "image")
        print(f"from_bale: {x!r}, {len(x.chunks[0])} chunks")
        pixels = x.astype(np.float64) / 255.0
        start = time.perf_counter()
        mean, std = dask.compute(pixels.mean(axis=(0, 1, 2)), pixels.std(axis=(0, 1, 2)))
        print(
            f"per-channel mean {np.round(mean, 4)}, std {np.round(std, 4)} in {time.perf_counter() - start:.2f} s"
        )

        labels = read_bale_dataframe(target, ["label"])
        counts = labels["label"].value_counts().compute().sort_index()
        print(f"label counts: {counts.tolist()}")

        everything = bale.open(target)["image"][:].astype(np.float64) / 255.0
        expected = make_images(np.arange(ROWS)).astype(np.float64) / 255.0
        ok = (
            np.array_equal(everything, expected)
            and np.allclose(mean, expected.mean(axis=(0, 1, 2)))
            and np.allclose(std, expected.std(axis=(0, 1, 2)))
            and counts.tolist() == [ROWS // 10 + (d < ROWS % 10) for d in range(10)]
            and verify(target).ok
        )
    print(
        "matches NumPy on the whole column" if ok else "MISMATCH",
        file=sys.stdout if ok else sys.stderr,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
