"""bale.dask on dask's schedulers: to_bale's write rate and merge, and from_bale's means and
shuffled batch gathers against dask over a memory-mapped .npy and over zarr.

    .venv/bin/python -m bench.dask_bench            # 56,000 rows, about 690 MB, some minutes
    .venv/bin/python -m bench.dask_bench --quick    # 4,000 rows, 16 MiB dask chunks, a minute

Rows are 64x64x3 uint8 images cut from real photos (bench.photo_data, 12,288 bytes a row),
written once to bench/out/dask/ as a ``.npy`` file, a ``.bale`` file with bale's defaults (by one
``bale.Writer``, timed), a ``.bale`` file written with ``random_access=True``, and a zarr array
(zarr's default codec, chunks of 1,000 rows); a ``.bale`` file with codec ``none`` tells the
cost of decoding from the adapter's own. The files are deleted at the end unless ``--keep``.
Every timed section starts with the files read through once, so the page cache is warm (reported:
the resident share of the files, from ``fincore``); nothing here measures a cold disk.

Writes: ``to_bale`` of a dask array whose chunks of 1,000 rows are read from the ``.npy`` file by
``map_blocks`` (as workers computing features would), on dask's threaded scheduler (2 threads)
and on a ``LocalCluster`` of 1 and of 2 worker processes of one thread each, against one
``bale.Writer`` fed the same rows in one process. Each run's merge of the parts into one file
(``PartSet.merge``, wrapped by this script to time it, and apart the removal of the parts that
ends it, ``PartSet.remove_parts``) is compared with a plain copy of the
merged file: ``shutil.copyfile`` (Linux: ``sendfile``) and ``copyfile`` followed by ``fsync``
(bale fsyncs every file it completes, so that is the like-for-like baseline). Before each timed
write or copy the last output is deleted and ``os.sync()`` flushes pending writeback. One warm-up run
of each job (imports, worker start) is not counted.

Means: ``x.mean(axis=0).compute()`` and the per-channel ``x.mean(axis=(0, 1, 2)).compute()`` on
the threaded scheduler with 2 threads, for ``from_bale`` (default chunks: whole row groups, up
to dask's ``array.chunk-size``), ``from_bale`` of the uncompressed file,
``da.from_array(np.load(path, mmap_mode="r"))`` with the same row chunks as ``from_bale``, and
``da.from_zarr`` (its storage chunks); then the first mean on a 2-worker ``LocalCluster`` for ``from_bale`` and zarr (a memory-mapped ``.npy`` would be pickled
whole to the workers). Results are checked against NumPy's once. Runs are round-robin over the
readers after one warm-up each; the ratio is to dask over ``.npy`` in the same run.

Gathers: ``x[np.sort(rng.choice(n, 64, replace=False))].compute()`` for ``--batches`` batches
(the same indices for every reader, one warm-up batch each, round-robin by batch), seconds per
batch, for ``from_bale`` on the default file and on the ``random_access`` file, and for dask over
``.npy`` and over zarr; as references without dask: ``Dataset.take`` of the same rows from both
bale files (opened with ``cache_bytes=0``, as ``from_bale`` reads) and NumPy fancy indexing of the
memory map. The first batch of each is checked.

Medians (min-max) of the repeats; each table gives the CPU seconds other processes used during
its section (the machine may be shared).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import signal
import statistics
import sys
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
from bench.machine import (
    ForeignLoad,
    describe,
    exit_on_sigterm,
    read_through,
    report_head,
    resident_bytes,
    src_digest,
)
from bench.photo_data import uint8_images
from bench.results import OUT, write_report
from bench.stats import Verdict, aims_section, fmt_range, print_aims, summary

WORK = OUT / "dask"
SOURCE_CHUNK = 1000  # rows per chunk of the dask array to_bale writes, and per zarr chunk
ROW_SHAPE = (64, 64, 3)
BATCH = 64
MERGE_AIM = 1.2
MERGE_SECONDS: list[float] = []
REMOVE_SECONDS: list[float] = []


# -- writing ------------------------------------------------------------------------------------


def load_rows(block: np.ndarray, npy: str) -> np.ndarray:
    """The images of these row numbers, read from the source file (on whichever worker)."""
    return np.array(np.load(npy, mmap_mode="r")[block[0] : block[-1] + 1])


def images_of(npy: Path, rows: int) -> Any:
    numbers = da.arange(rows, chunks=SOURCE_CHUNK)
    return numbers.map_blocks(
        load_rows, str(npy), dtype=np.uint8, new_axis=[1, 2, 3], chunks=(SOURCE_CHUNK, *ROW_SHAPE)
    )


@contextmanager
def timed_merges() -> Iterator[None]:
    """PartSet.merge and PartSet.remove_parts (which merge calls last) wrapped so that each
    merge's wall seconds land in MERGE_SECONDS, and those of its removal of the parts in
    REMOVE_SECONDS."""
    parts_set = bale.ops.parts.PartSet
    original, original_remove = parts_set.merge, parts_set.remove_parts

    @functools.wraps(original)
    def merge(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            MERGE_SECONDS.append(time.perf_counter() - start)

    @functools.wraps(original_remove)
    def remove_parts(self: Any) -> None:
        start = time.perf_counter()
        try:
            original_remove(self)
        finally:
            REMOVE_SECONDS.append(time.perf_counter() - start)

    parts_set.merge = merge  # type: ignore[method-assign]
    parts_set.remove_parts = remove_parts  # type: ignore[method-assign]
    try:
        yield
    finally:
        parts_set.merge = original  # type: ignore[method-assign]
        parts_set.remove_parts = original_remove  # type: ignore[method-assign]


@contextmanager
def threads() -> Iterator[None]:
    with dask.config.set(scheduler="threads", num_workers=2):
        yield


@contextmanager
def cluster(workers: int) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            host="127.0.0.1",
            silence_logs=50,
        ) as local,
        Client(local) as client,  # type: ignore[no-untyped-call]
    ):
        yield client


def timed(job: Callable[[], Any]) -> float:
    start = time.perf_counter()
    job()
    return time.perf_counter() - start


def write_single(images: np.ndarray, path: Path, **kwargs: Any) -> None:
    with bale.Writer(path, overwrite=True, **kwargs) as writer:
        for lo in range(0, len(images), SOURCE_CHUNK):
            writer.write({"img": images[lo : lo + SOURCE_CHUNK]})


def write_zarr(images: np.ndarray, path: Path) -> None:
    import zarr

    store = zarr.open_array(
        path, mode="w", shape=images.shape, chunks=(SOURCE_CHUNK, *ROW_SHAPE), dtype="u1"
    )
    store[:] = images


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def tree_files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def warm(paths: list[Path]) -> float | None:
    """Read the files through; the share of their bytes then resident in the page cache."""
    files = [f for p in paths for f in tree_files(p)]
    read_through(files)
    resident = resident_bytes(files)
    total = sum(f.stat().st_size for f in files)
    return None if resident is None or not total else resident / total


def write_section(cfg: argparse.Namespace, npy: Path, images: np.ndarray) -> dict[str, Any]:
    rows = len(images)
    raw = images.nbytes
    target = WORK / "to_bale.bale"
    single = WORK / "single.bale"
    load = ForeignLoad()
    jobs: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
        ("bale.Writer, 1 process", threads, lambda: write_single(images, single)),
        (
            "to_bale, threads (2)",
            threads,
            lambda: to_bale(images_of(npy, rows), target, column="img", overwrite=True),
        ),
        (
            "to_bale, LocalCluster 1 worker",
            lambda: cluster(1),
            lambda: to_bale(images_of(npy, rows), target, column="img", overwrite=True),
        ),
        (
            "to_bale, LocalCluster 2 workers",
            lambda: cluster(2),
            lambda: to_bale(images_of(npy, rows), target, column="img", overwrite=True),
        ),
    ]
    cases: list[dict[str, Any]] = []
    with timed_merges():
        for name, context, job in jobs:
            with context():
                timed(job)  # warm-up: imports, worker start
                MERGE_SECONDS.clear()
                REMOVE_SECONDS.clear()
                seconds = []
                for _ in range(cfg.repeats):
                    # Each run writes a new file, as a first run would (replacing the last
                    # run's file would add its unlink to the merge), with no writeback pending.
                    (single if name.startswith("bale.Writer") else target).unlink()
                    warm([npy])
                    os.sync()
                    seconds.append(timed(job))
                    print(f"  {name}: {seconds[-1]:.2f} s", flush=True)
                merges, removals = list(MERGE_SECONDS), list(REMOVE_SECONDS)
            if removals and len(removals) != len(merges):
                sys.exit(f"{name}: {len(merges)} merges but {len(removals)} removals of parts")
            s = summary(seconds)
            cases.append(
                {
                    "case": name,
                    "seconds": s,
                    "rows_per_s": rows / s["median"],
                    "mb_per_s": raw / 1e6 / s["median"],
                    "merge_s": summary(merges) if merges else None,
                    "remove_parts_s": summary(removals) if removals else None,
                    "merge_without_removal_s": (
                        summary([m - r for m, r in zip(merges, removals, strict=True)])
                        if merges
                        else None
                    ),
                }
            )
    np.testing.assert_array_equal(bale.open(target)["img"][:], images)
    copy = WORK / "copy.bale"
    copies: dict[str, list[float]] = {"copyfile": [], "copyfile + fsync": []}
    for _ in range(max(cfg.repeats, 3)):
        for name in copies:
            copy.unlink(missing_ok=True)
            warm([target])
            os.sync()
            start = time.perf_counter()
            shutil.copyfile(target, copy)
            if name == "copyfile + fsync":
                fsync_path(copy)
            copies[name].append(time.perf_counter() - start)
    copy.unlink(missing_ok=True)
    base = statistics.median(copies["copyfile"])
    base_sync = statistics.median(copies["copyfile + fsync"])
    for case in cases:
        if case["merge_s"] is not None:
            case["merge_vs_copyfile"] = case["merge_s"]["median"] / base
            case["merge_vs_copyfile_fsync"] = case["merge_s"]["median"] / base_sync
            proper = case["merge_without_removal_s"]["median"]
            case["merge_without_removal_vs_copyfile"] = proper / base
            case["merge_without_removal_vs_copyfile_fsync"] = proper / base_sync
    return {
        "cases": cases,
        "copy_s": {name: summary(v) for name, v in copies.items()},
        "merged_bytes": target.stat().st_size,
        "merged_row_groups": len(bale.open(target).row_group_sizes),
        "foreign": load.result(),
    }


# -- reading: means and gathers -----------------------------------------------------------------


def mean_section(
    cfg: argparse.Namespace, files: dict[str, Path], images: np.ndarray
) -> dict[str, Any]:
    x = from_bale(files["bale"], "img")
    arrays = {
        "from_bale": x,
        "from_bale, uncompressed file": from_bale(files["bale_uncompressed"], "img"),
        "npy (mmap), same chunks": da.from_array(  # type: ignore[no-untyped-call]
            np.load(files["npy"], mmap_mode="r"), chunks=(x.chunks[0], *((n,) for n in ROW_SHAPE))
        ),
        "zarr": da.from_zarr(str(files["zarr"])),  # type: ignore[no-untyped-call]
    }
    reductions: dict[str, Callable[[Any], Any]] = {
        "mean(axis=0)": lambda a: a.mean(axis=0),
        "mean(axis=(0, 1, 2))": lambda a: a.mean(axis=(0, 1, 2)),
    }
    expected = {
        "mean(axis=0)": images.mean(axis=0),
        "mean(axis=(0, 1, 2))": images.reshape(-1, 3).mean(axis=0),
    }
    resident = warm(list(files.values()))
    load = ForeignLoad()
    out: dict[str, Any] = {"resident": resident, "tables": {}}
    with threads():
        for what, reduce in reductions.items():
            times: dict[str, list[float]] = {name: [] for name in arrays}
            for array in arrays.values():
                np.testing.assert_allclose(reduce(array).compute(), expected[what], rtol=1e-9)
            for _ in range(cfg.repeats):
                for name, array in arrays.items():
                    times[name].append(timed(functools.partial(compute_of, reduce(array))))
            print(
                f"  {what}: "
                + ", ".join(f"{n} {statistics.median(t):.2f} s" for n, t in times.items()),
                flush=True,
            )
            base = statistics.median(times["npy (mmap), same chunks"])
            out["tables"][what] = [
                {
                    "reader": name,
                    "chunks": len(arrays[name].chunks[0]),
                    "chunk_mb": max(arrays[name].chunks[0]) * images[0].nbytes / 1e6,
                    "seconds": summary(times[name]),
                    "vs_npy": statistics.median(times[name]) / base,
                }
                for name in arrays
            ]
    out["foreign"] = load.result()
    load = ForeignLoad()
    with cluster(2):
        on_cluster = {"from_bale": x, "zarr": arrays["zarr"]}
        times = {name: [] for name in on_cluster}
        for array in on_cluster.values():
            np.testing.assert_allclose(array.mean(axis=0).compute(), expected["mean(axis=0)"])
        for _ in range(cfg.repeats):
            for name, array in on_cluster.items():
                times[name].append(timed(functools.partial(compute_of, array.mean(axis=0))))
        base = statistics.median(times["zarr"])
        out["cluster"] = [
            {
                "reader": name,
                "chunks": len(on_cluster[name].chunks[0]),
                "seconds": summary(times[name]),
                "vs_zarr": statistics.median(times[name]) / base,
            }
            for name in on_cluster
        ]
    out["cluster_foreign"] = load.result()
    return out


def compute_of(collection: Any) -> Any:
    return collection.compute()


def compute_rows(array: Any, rows: np.ndarray) -> np.ndarray:
    out: np.ndarray = array[rows].compute()
    return out


def take_rows(dataset: Any, rows: np.ndarray) -> np.ndarray:
    out: np.ndarray = dataset.take(rows, ["img"])["img"]
    return out


def index_rows(memmap: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.array(memmap[rows])


def gather_section(
    cfg: argparse.Namespace, files: dict[str, Path], images: np.ndarray
) -> dict[str, Any]:
    n = len(images)
    rng = np.random.default_rng(1)
    batches = [np.sort(rng.choice(n, BATCH, replace=False)) for _ in range(cfg.batches + 1)]
    memmap = np.load(files["npy"], mmap_mode="r")
    x = from_bale(files["bale"], "img")
    arrays: dict[str, Any] = {
        "from_bale": x,
        "from_bale, random_access file": from_bale(files["bale_random_access"], "img"),
        "npy (mmap), same chunks": da.from_array(  # type: ignore[no-untyped-call]
            memmap, chunks=(x.chunks[0], *((k,) for k in ROW_SHAPE))
        ),
        "zarr": da.from_zarr(str(files["zarr"])),  # type: ignore[no-untyped-call]
    }
    # No block cache, as from_bale reads: a repeated row would otherwise be a cache hit.
    default = bale.open(files["bale"], cache_bytes=0)
    random_access = bale.open(files["bale_random_access"], cache_bytes=0)
    readers: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        name: functools.partial(compute_rows, array) for name, array in arrays.items()
    }
    readers["Dataset.take (no dask)"] = functools.partial(take_rows, default)
    readers["Dataset.take, random_access file (no dask)"] = functools.partial(
        take_rows, random_access
    )
    readers["numpy fancy index of the mmap (no dask)"] = functools.partial(index_rows, memmap)
    resident = warm(list(files.values()))
    load = ForeignLoad()
    times: dict[str, list[float]] = {name: [] for name in readers}
    with threads():
        for read in readers.values():
            np.testing.assert_array_equal(read(batches[1]), images[batches[1]])
            read(batches[0])  # warm-up
        for batch in batches[1:]:
            for name, read in readers.items():
                times[name].append(timed(functools.partial(read, batch)))
    foreign = load.result()
    default.close()
    random_access.close()
    base = statistics.median(times["npy (mmap), same chunks"])
    return {
        "resident": resident,
        "batches": cfg.batches,
        "rows": [
            {
                "reader": name,
                "ms": summary([t * 1e3 for t in times[name]]),
                "vs_npy": statistics.median(times[name]) / base,
            }
            for name in readers
        ],
        "foreign": foreign,
    }


# -- the run ------------------------------------------------------------------------------------


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    WORK.mkdir(parents=True, exist_ok=True)
    raw = cfg.rows * int(np.prod(ROW_SHAPE))
    free = shutil.disk_usage(WORK).free
    if free < 9 * raw:  # npy, four bale files, zarr, parts, a copy, headroom
        sys.exit(f"{WORK}: {free / 1e9:.1f} GB free, this run needs about {9 * raw / 1e9:.1f} GB")
    env = describe(WORK, packages=("numpy", "dask", "distributed", "zarr", "blosc2"))
    started = time.perf_counter()
    images = uint8_images(cfg.rows, seed=0)
    print(
        f"{cfg.rows} rows, {images.nbytes / 1e6:.0f} MB made in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    files = {
        "npy": WORK / "images.npy",
        "bale": WORK / "single.bale",
        "bale_random_access": WORK / "random_access.bale",
        "bale_uncompressed": WORK / "uncompressed.bale",
        "zarr": WORK / "images.zarr",
    }
    made = {
        "npy": timed(lambda: np.save(files["npy"], images)),
        "bale_random_access": timed(
            lambda: write_single(images, files["bale_random_access"], random_access=True)
        ),
        "bale_uncompressed": timed(
            lambda: write_single(images, files["bale_uncompressed"], codecs={"img": "none"})
        ),
        "zarr": timed(lambda: write_zarr(images, files["zarr"])),
    }
    print("== writes", flush=True)
    writes = write_section(cfg, files["npy"], images)  # also writes files["bale"]
    made["bale"] = writes["cases"][0]["seconds"]["median"]
    data: dict[str, dict[str, Any]] = {
        name: {
            "bytes": tree_bytes(path),
            "files": len(tree_files(path)),
            "write_s": made[name],
        }
        for name, path in files.items()
    }
    with bale.open(files["bale"]) as ds:
        data["bale"]["row_groups"] = len(ds.row_group_sizes)
        data["bale"]["codec"] = ds.index.codecs[0]
    shutil.rmtree(WORK / "to_bale.bale.parts", ignore_errors=True)
    (WORK / "to_bale.bale").unlink(missing_ok=True)
    print("== means", flush=True)
    means = mean_section(cfg, files, images)
    print("== gathers", flush=True)
    gathers = gather_section(cfg, files, images)
    merge_2 = next(c for c in writes["cases"] if c["case"] == "to_bale, LocalCluster 2 workers")
    copy_sync = writes["copy_s"]["copyfile + fsync"]["median"]
    verdicts = [
        Verdict(
            f"merge <= {MERGE_AIM}x a plain copy of the same bytes (copyfile + fsync): the "
            "merge proper (row groups copied, footer, fsync, rename)",
            merge_2["merge_without_removal_vs_copyfile_fsync"] <= MERGE_AIM,
            f"{merge_2['merge_without_removal_vs_copyfile_fsync']:.2f}x "
            f"({merge_2['merge_without_removal_s']['median']:.2f} s vs {copy_sync:.2f} s; "
            f"{merge_2['merge_without_removal_vs_copyfile']:.2f}x copyfile without fsync), "
            "2-worker job",
        ),
        Verdict(
            f"merge <= {MERGE_AIM}x a plain copy of the same bytes (copyfile + fsync): the "
            "whole merge step to_bale waits for (the parts' removal included)",
            merge_2["merge_vs_copyfile_fsync"] <= MERGE_AIM,
            f"{merge_2['merge_vs_copyfile_fsync']:.2f}x ({merge_2['merge_s']['median']:.2f} s "
            f"vs {copy_sync:.2f} s; {merge_2['merge_vs_copyfile']:.2f}x copyfile without "
            f"fsync; removing the parts {merge_2['remove_parts_s']['median']:.2f} s), "
            "2-worker job",
        ),
    ]
    print_aims(verdicts)
    return {
        "rows": cfg.rows,
        "raw_bytes": raw,
        "chunk_size": dask.config.get("array.chunk-size"),
        "repeats": cfg.repeats,
        "data": data,
        "writes": writes,
        "means": means,
        "gathers": gathers,
        "aims": [v.to_json() for v in verdicts],
        "env": env,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4,000 rows, 16 MiB dask chunks")
    parser.add_argument("--rows", type=int, default=None, help="rows of 12,288 bytes")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--batches", type=int, default=None, help="gathered batches of 64 rows")
    parser.add_argument("--chunk-size", default=None, help="dask's array.chunk-size")
    parser.add_argument("--keep", action="store_true", help=f"keep the files in {WORK}")
    cfg = parser.parse_args()
    cfg.rows = cfg.rows or (4000 if cfg.quick else 56000)
    cfg.repeats = cfg.repeats or (2 if cfg.quick else 3)
    cfg.batches = cfg.batches or (10 if cfg.quick else 50)
    cfg.chunk_size = cfg.chunk_size or ("16MiB" if cfg.quick else "128MiB")
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    t0 = time.perf_counter()
    try:
        with dask.config.set({"array.chunk-size": cfg.chunk_size}):
            results = run(cfg)
    finally:
        if not cfg.keep:
            shutil.rmtree(WORK, ignore_errors=True)
    command = ".venv/bin/python -m bench.dask_bench" + (" --quick" if cfg.quick else "")
    results.update(
        {
            "src_digest": src_digest(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": command,
            "total_seconds": time.perf_counter() - t0,
        }
    )
    written = write_report("dask_bench", results, render(results), quick=cfg.quick)
    print(f"wrote {written}")


# -- the report ---------------------------------------------------------------------------------


def _load(foreign: dict[str, float]) -> str:
    return (
        f"Other processes used {foreign['foreign_cpu_s']:.0f} CPU s during this section "
        f"({foreign['wall_s']:.0f} s wall, {max(0.0, foreign['foreign_cores']):.2f} cores on "
        "average)."
    )


def _resident(share: float | None) -> str:
    if share is None:
        return "page cache warm (files read through just before; fincore not available)"
    return f"page cache warm: {share:.0%} of the files' bytes resident (fincore) at the start"


def render(results: dict[str, Any]) -> str:
    lines = report_head(
        "Dask: to_bale writes and merges, from_bale means and gathers", results, __doc__
    )
    raw_mb = results["raw_bytes"] / 1e6
    labels = {
        "npy": ".npy",
        "bale": ".bale, defaults",
        "bale_random_access": ".bale, random_access=True",
        "bale_uncompressed": ".bale, codec none",
        "zarr": "zarr, 1,000-row chunks",
    }
    lines += [
        "## Data",
        "",
        f"{results['rows']:,} rows of 64x64x3 uint8, {raw_mb:.0f} MB raw; dask's "
        f"`array.chunk-size` {results['chunk_size']}; {results['repeats']} timed runs of each "
        "case.",
        "",
        "| file | MB on disk | files | written in s |",
        "|---|---:|---:|---:|",
    ]
    for name, d in results["data"].items():
        lines.append(
            f"| {labels[name]} | {d['bytes'] / 1e6:.0f} | {d['files']} | {d['write_s']:.2f} |"
        )
    d = results["data"]["bale"]
    lines += [
        "",
        f"The default bale file: {d['row_groups']} row groups, codec `{d['codec']}`. "
        "The bale.Writer time is the median of the write table below; the others are one run.",
        "",
    ]
    w = results["writes"]
    lines += [
        "## Writes: to_bale, and its merge against a plain copy",
        "",
        f"Merged file: {w['merged_bytes'] / 1e6:.0f} MB, {w['merged_row_groups']} row groups. "
        f"Plain copy of it: copyfile {fmt_range(w['copy_s']['copyfile'], 3)} s, copyfile + "
        f"fsync {fmt_range(w['copy_s']['copyfile + fsync'], 3)} s.",
        "",
        "| job | s, median (min-max) | rows/s | raw MB/s | merge s | of which removing the "
        "parts s | merge / copyfile | merge / (copyfile + fsync) | merge without the removal / "
        "(copyfile + fsync) |",
        "|---|---|---:|---:|---|---|---:|---:|---:|",
    ]
    for c in w["cases"]:
        merge = (
            f"{fmt_range(c['merge_s'], 3)} | {fmt_range(c['remove_parts_s'], 3)} | "
            f"{c['merge_vs_copyfile']:.2f}x | {c['merge_vs_copyfile_fsync']:.2f}x | "
            f"{c['merge_without_removal_vs_copyfile_fsync']:.2f}x"
            if c["merge_s"]
            else "- | - | - | - | -"
        )
        lines.append(
            f"| {c['case']} | {fmt_range(c['seconds'], 2)} | {c['rows_per_s']:,.0f} | "
            f"{c['mb_per_s']:.0f} | {merge} |"
        )
    lines += ["", _load(w["foreign"]), ""]
    m = results["means"]
    lines += [
        "## Means over the column, threaded scheduler (2 threads)",
        "",
        _resident(m["resident"]) + ".",
        "",
    ]
    for what, table in m["tables"].items():
        lines += [
            f"### `x.{what}.compute()`",
            "",
            "| reader | chunks | MB per chunk (max) | s, median (min-max) | vs .npy |",
            "|---|---:|---:|---|---:|",
        ]
        for r in table:
            lines.append(
                f"| {r['reader']} | {r['chunks']} | {r['chunk_mb']:.0f} | "
                f"{fmt_range(r['seconds'], 3)} | {r['vs_npy']:.2f}x |"
            )
        lines.append("")
    lines += [
        _load(m["foreign"]),
        "",
        "### `x.mean(axis=0).compute()` on a LocalCluster of 2 worker processes (1 thread each)",
        "",
        "| reader | chunks | s, median (min-max) | vs zarr |",
        "|---|---:|---|---:|",
    ]
    for r in m["cluster"]:
        lines.append(
            f"| {r['reader']} | {r['chunks']} | {fmt_range(r['seconds'], 3)} | "
            f"{r['vs_zarr']:.2f}x |"
        )
    lines += ["", _load(m["cluster_foreign"]), ""]
    g = results["gathers"]
    lines += [
        f"## Shuffled batch gather: `x[np.sort(rng.choice(n, {BATCH}, replace=False))]"
        ".compute()`, threaded scheduler (2 threads)",
        "",
        f"{g['batches']} batches, the same for every reader; {_resident(g['resident'])}.",
        "",
        "| reader | ms per batch, median (min-max) | vs dask over .npy |",
        "|---|---|---:|",
    ]
    for r in g["rows"]:
        lines.append(f"| {r['reader']} | {fmt_range(r['ms'], 1)} | {r['vs_npy']:.2f}x |")
    lines += [
        "",
        _load(g["foreign"]),
        "",
        *aims_section(
            [Verdict(a["aim"], a["verdict"] == "PASS", a["detail"]) for a in results["aims"]]
        ),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
