"""bale.dask.to_bale and from_bale on dask's schedulers: write rate with 1 and 2 worker processes,
the merge against a plain copy, and a mean over the column against .npy and zarr.

    .venv/bin/python -m bench.dask_bench [--rows 8000] [--repeats 3]

Writes 64x64x3 uint8 images (bench.photo_data, 12 KiB a row) to a ``.npy`` file; the write jobs
read their rows from it by chunks of 1,000 (``map_blocks`` over row numbers, as workers computing
features would) and write them with ``to_bale`` on dask's threaded scheduler (2 threads) and on a
``LocalCluster`` of 1 and of 2 worker processes of one thread each; each job's merge is timed
apart (``PartSet.merge`` wrapped by this script) and compared with ``shutil.copyfile`` of the
merged file. A single-process ``bale.Writer`` of the same rows is the reference. Then
``x.mean(axis=0).compute()`` for ``from_bale`` (threads and the 2-worker cluster), for
``da.from_array`` of the memory-mapped ``.npy`` and for ``da.from_zarr`` (zarr's default codec,
chunks of 1,000 rows). Files are in the page cache (written just before). Medians of
``--repeats`` runs; prints a table, writes no report.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

import bale
import bale.ops.parts
from bale.dask import from_bale, to_bale
from bench.photo_data import uint8_images

CHUNK = 1000
MERGE_SECONDS: list[float] = []


def load_rows(block: np.ndarray, npy: str) -> np.ndarray:
    """The images of these row numbers, read from the source file (on whichever worker)."""
    return np.array(np.load(npy, mmap_mode="r")[block[0] : block[-1] + 1])


def images_of(npy: Path, rows: int) -> Any:
    numbers = da.arange(rows, chunks=CHUNK)
    return numbers.map_blocks(
        load_rows, str(npy), dtype=np.uint8, new_axis=[1, 2, 3], chunks=(CHUNK, 64, 64, 3)
    )


@contextmanager
def timed_merges() -> Iterator[None]:
    original = bale.ops.parts.PartSet.merge

    @functools.wraps(original)
    def merge(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            MERGE_SECONDS.append(time.perf_counter() - start)

    bale.ops.parts.PartSet.merge = merge  # type: ignore[method-assign]
    try:
        yield
    finally:
        bale.ops.parts.PartSet.merge = original  # type: ignore[method-assign]


@contextmanager
def cluster(workers: int) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            host="127.0.0.1",
            silence_logs=50,
        ) as local,
        Client(local) as client,
    ):
        yield client


def median_s(job: Callable[[], Any], repeats: int) -> float:
    job()  # warm-up: imports, worker start, page cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        job()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def write_once(npy: Path, rows: int, target: Path) -> float:
    """Seconds for one to_bale of the images; the merge's seconds appended to MERGE_SECONDS."""
    start = time.perf_counter()
    to_bale(images_of(npy, rows), target, column="img", overwrite=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = args.rows
    with tempfile.TemporaryDirectory(prefix="bale-dask-bench-") as tmp:
        work = Path(tmp)
        images = uint8_images(rows, seed=0)
        npy = work / "images.npy"
        np.save(npy, images)
        megabytes = images.nbytes / 1e6
        print(
            f"{rows} rows of 64x64x3 uint8, {megabytes:.0f} MB; {os.cpu_count()} cores, "
            f"dask {dask.__version__}, Python {sys.version.split()[0]}; medians of "
            f"{args.repeats}, files in the page cache"
        )

        def single() -> None:
            with bale.Writer(work / "single.bale", overwrite=True) as writer:
                for lo in range(0, rows, CHUNK):
                    writer.write({"img": images[lo : lo + CHUNK]})

        print(f"\n{'write':<34}{'s':>8}{'rows/s':>10}{'MB/s':>8}{'merge s':>9}{'merge/copy':>11}")
        target = work / "out.bale"
        results = {"bale.Writer, 1 process": (median_s(single, args.repeats), None)}
        with timed_merges():
            jobs: list[tuple[str, Callable[[], Any]]] = [
                ("to_bale, threads (2)", lambda: dask.config.set(scheduler="threads")),
                ("to_bale, LocalCluster 1 worker", lambda: cluster(1)),
                ("to_bale, LocalCluster 2 workers", lambda: cluster(2)),
            ]
            for name, context in jobs:
                with context():
                    MERGE_SECONDS.clear()
                    seconds = median_s(lambda: write_once(npy, rows, target), args.repeats)
                    merge = statistics.median(MERGE_SECONDS)
                results[name] = (seconds, merge)
        np.testing.assert_array_equal(bale.open(target)["img"][:], images)
        copy = median_s(lambda: shutil.copyfile(target, work / "copy.bale"), args.repeats)
        for name, (seconds, merge) in results.items():
            merged = "" if merge is None else f"{merge:>9.3f}{merge / copy:>10.2f}x"
            print(
                f"{name:<34}{seconds:>8.2f}{rows / seconds:>10.0f}{megabytes / seconds:>8.0f}{merged}"
            )
        print(f"(plain copy of the merged file: {copy:.3f} s)")

        import zarr

        store = zarr.open_array(
            work / "images.zarr",
            mode="w",
            shape=images.shape,
            chunks=(CHUNK, 64, 64, 3),
            dtype="u1",
        )
        store[:] = images
        arrays = {
            "from_bale, threads": (from_bale(target, "img"), None),
            "npy (mmap), threads": (
                da.from_array(np.load(npy, mmap_mode="r"), chunks=(CHUNK * 4, 64, 64, 3)),
                None,
            ),
            "zarr, threads": (da.from_zarr(str(work / "images.zarr")), None),
        }
        expected = images.mean(axis=0)
        print(f"\n{'x.mean(axis=0)':<34}{'chunks':>8}{'s':>8}")
        for name, (array, _) in arrays.items():
            np.testing.assert_allclose(array.mean(axis=0).compute(), expected)
            with dask.config.set(scheduler="threads"):
                seconds = median_s(lambda a=array: a.mean(axis=0).compute(), args.repeats)
            print(f"{name:<34}{len(array.chunks[0]):>8}{seconds:>8.2f}")
        with cluster(2):
            x = from_bale(target, "img")
            seconds = median_s(lambda: x.mean(axis=0).compute(), args.repeats)
            print(f"{'from_bale, LocalCluster 2 workers':<34}{len(x.chunks[0]):>8}{seconds:>8.2f}")


if __name__ == "__main__":
    main()
