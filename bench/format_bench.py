"""Format benchmark: bale against raw .npy and h5py (gzip-4, lzf, no compression).

For three data kinds built by ``bench/photo_data.py`` from real photos (JPEG bytes, small uint8
images, sparse float32 activations) it measures, in one process: file size, write throughput
(fsync included), and sequential read throughput of the decoded data with a warm and a cold
page cache. It also times opening a 10^6-row file and records peak RSS while streaming a
multi-GB file through ``bale.Writer`` and through a resized h5py dataset (each in a subprocess,
so the peak belongs to the writer alone). Results go to ``bench/results/format_bench.json`` and
``bench/results/format_bench.md``; each aim is judged PASS or MISS as measured.

    .venv/bin/python -m bench.format_bench           # full run, about 10 minutes
    .venv/bin/python -m bench.format_bench --quick   # smaller data, about 1 minute

Units: 1 MB = 10^6 bytes. Throughput = raw (uncompressed) bytes of the data / wall seconds.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

import bale
from bale._core.defaults import DEFAULT_ROW_GROUP_BYTES
from bench import photo_data
from bench.machine import (
    ForeignLoad,
    describe,
    evict,
    exit_on_sigterm,
    machine_section,
    proc_io,
    reset_peak_rss,
    resident_bytes,
    vm_status,
)
from bench.results import OUT, ROOT, write_report
from bench.stats import fmt_range, summary

# Everything written there (git-ignored) is deleted at the end.
WORK = OUT / "format_bench"
MB = 1e6
Batch = dict[str, Any]
ColumnData = NDArray[Any] | list[bytes]

# Aims the benchmark judges (from the project brief).
AIM_READ_VS_GZIP = 3.0
AIM_OPEN_MS = 50.0
# Growth of peak RSS (MB) after the first checkpoint that still counts as "flat".
FLAT_RSS_MB = 64.0
# Average cores used by other processes above which a section's timings count as disturbed.
FOREIGN_WARN_CORES = 0.1


@dataclass(frozen=True)
class Config:
    quick: bool
    n_jpeg: int
    n_uint8: int
    n_act: int
    repeats: int
    open_rows: int
    open_repeats: int
    open_fresh_repeats: int
    rss_bytes: int
    rss_checkpoint: int

    @classmethod
    def make(cls, quick: bool) -> Config:
        if quick:
            return cls(True, 300, 2400, 900, 3, 10**6, 20, 3, 600_000_000, 100_000_000)
        # ~140 MB of JPEGs, ~295 MB of images, ~295 MB of activations, >= 4 GB streamed.
        return cls(False, 3000, 24_000, 9_000, 5, 10**6, 20, 5, 4 << 30, 500_000_000)


@dataclass
class Kind:
    """One data kind: named columns (arrays, or lists of bytes) and their raw size."""

    name: str
    description: str
    columns: dict[str, ColumnData]

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values())))

    @property
    def raw_bytes(self) -> int:
        return sum(column_nbytes(c) for c in self.columns.values())


def column_nbytes(column: Any) -> int:
    """Payload bytes of a column: array bytes, or the sum of row lengths for variable rows."""
    if isinstance(column, np.ndarray) and column.dtype != object:
        return int(column.nbytes)
    return sum(len(row) for row in column)


def batch_nbytes(batch: Batch) -> int:
    return sum(column_nbytes(c) for c in batch.values())


# -- formats ----------------------------------------------------------------------------------


def fsync_path(path: Path) -> None:
    """Make a file (or directory entry) durable, so write timings include reaching the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def bale_write(path: Path, kind: Kind, _piece_rows: int) -> None:
    # Default codecs and row-group size: the point is what a user gets without tuning.
    bale.write(path, kind.columns, overwrite=True)


def bale_read(path: Path, _piece_rows: int) -> Iterator[Batch]:
    with bale.open(path) as ds:
        yield from ds.iter_row_groups()


def npy_write(path: Path, kind: Kind, _piece_rows: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for name, column in kind.columns.items():
        if isinstance(column, np.ndarray):
            _save_npy(path / f"{name}.npy", column)
        else:
            # Variable rows as one concatenated uint8 array plus n+1 offsets, the usual
            # hand-rolled layout for JPEG bytes next to a memory-mapped .npy.
            lengths = np.fromiter((len(r) for r in column), np.int64, len(column))
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            _save_npy(path / f"{name}.bytes.npy", np.frombuffer(b"".join(column), np.uint8))
            _save_npy(path / f"{name}.offsets.npy", offsets)
    fsync_path(path)


def _save_npy(path: Path, array: NDArray[Any]) -> None:
    with open(path, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())


def npy_read(path: Path, piece_rows: int) -> Iterator[Batch]:
    maps = {p.name[: -len(".npy")]: np.load(p, mmap_mode="r") for p in sorted(path.glob("*.npy"))}
    names = sorted({k.split(".")[0] for k in maps})
    first = names[0]
    rows = len(maps[first]) if first in maps else len(maps[f"{first}.offsets"]) - 1
    for start in range(0, rows, piece_rows):
        stop = min(rows, start + piece_rows)
        batch: Batch = {}
        for name in names:
            if name in maps:
                # np.array copies: a slice of a memmap alone reads nothing from disk.
                batch[name] = np.array(maps[name][start:stop])
            else:
                offsets = np.array(maps[f"{name}.offsets"][start : stop + 1])
                blob = np.array(maps[f"{name}.bytes"][offsets[0] : offsets[-1]])
                rel = (offsets - offsets[0]).tolist()
                batch[name] = [blob[rel[i] : rel[i + 1]] for i in range(stop - start)]
        yield batch


def h5_writer(compression: str | None, opts: int | None) -> Callable[[Path, Kind, int], None]:
    def write(path: Path, kind: Kind, piece_rows: int) -> None:
        chunk_rows = min(piece_rows, kind.rows)
        with h5py.File(path, "w") as f:
            for name, column in kind.columns.items():
                if isinstance(column, np.ndarray):
                    f.create_dataset(
                        name,
                        data=column,
                        chunks=(chunk_rows, *column.shape[1:]),
                        compression=compression,
                        compression_opts=opts,
                    )
                else:
                    _h5_vlen(f, name, column, chunk_rows, compression, opts)
        fsync_path(path)

    return write


def _h5_vlen(
    f: h5py.File,
    name: str,
    rows: list[bytes],
    chunk_rows: int,
    compression: str | None,
    opts: int | None,
) -> None:
    # HDF5 filters apply to the chunked vlen descriptors only; the bytes themselves live in the
    # global heap, uncompressed. That is what an h5py user storing JPEGs gets.
    data = np.empty(len(rows), dtype=object)
    for i, row in enumerate(rows):
        data[i] = np.frombuffer(row, np.uint8)
    ds = f.create_dataset(
        name,
        shape=(len(rows),),
        dtype=h5py.vlen_dtype(np.uint8),
        chunks=(chunk_rows,),
        compression=compression,
        compression_opts=opts,
    )
    ds[:] = data


def h5_read(path: Path, piece_rows: int) -> Iterator[Batch]:
    with h5py.File(path, "r") as f:
        columns = {name: f[name] for name in f}
        rows = next(iter(columns.values())).shape[0]
        for start in range(0, rows, piece_rows):
            # Chunk-aligned slices: h5py decompresses whole chunks straight into the result.
            yield {name: ds[start : start + piece_rows] for name, ds in columns.items()}


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    write: Callable[[Path, Kind, int], None]
    read: Callable[[Path, int], Iterator[Batch]]


FORMATS = (
    Format("bale", ".bale", bale_write, bale_read),
    Format("npy", ".npydir", npy_write, npy_read),
    Format("h5py gzip-4", ".gzip4.h5", h5_writer("gzip", 4), h5_read),
    Format("h5py lzf", ".lzf.h5", h5_writer("lzf", None), h5_read),
    Format("h5py none", ".none.h5", h5_writer(None, None), h5_read),
)


def files_of(path: Path) -> list[Path]:
    return sorted(path.iterdir()) if path.is_dir() else [path]


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


# -- measurement helpers ----------------------------------------------------------------------


def mbps(raw_bytes: int, seconds: list[float]) -> dict[str, float]:
    """Throughput summary; min/max of the rate come from max/min of the time."""
    rates = [raw_bytes / s / MB for s in seconds]
    return summary(rates)


def timed_write(fmt: Format, path: Path, kind: Kind, piece_rows: int) -> float:
    remove(path)
    os.sync()  # flush unrelated dirty pages so they are not charged to this write
    gc.collect()
    t0 = time.perf_counter()
    fmt.write(path, kind, piece_rows)
    return time.perf_counter() - t0


def timed_read(fmt: Format, path: Path, piece_rows: int, expected: int) -> tuple[float, int]:
    """Seconds to read everything sequentially, and device bytes read meanwhile."""
    gc.collect()
    io0 = proc_io()["read_bytes"]
    t0 = time.perf_counter()
    got = sum(batch_nbytes(b) for b in fmt.read(path, piece_rows))
    seconds = time.perf_counter() - t0
    io_bytes = proc_io()["read_bytes"] - io0
    if got != expected:
        raise AssertionError(f"{fmt.name} read {got} bytes, expected {expected}")
    return seconds, io_bytes


def verify_contents(fmt: Format, path: Path, kind: Kind, piece_rows: int) -> None:
    """Every format must give back exactly what was written (checked once, untimed)."""
    parts: dict[str, list[Any]] = {name: [] for name in kind.columns}
    for batch in fmt.read(path, piece_rows):
        for name, value in batch.items():
            parts[name].append(value)
    for name, original in kind.columns.items():
        if isinstance(original, np.ndarray):
            same = np.array_equal(np.concatenate(parts[name]), original)
        else:
            rows = [bytes(r) for piece in parts[name] for r in piece]
            same = rows == original
        if not same:
            raise AssertionError(f"{fmt.name}: column {name!r} differs from what was written")


# Where a bale read spends its time: (label, how to match a profile entry, own or cumulative).
# Cumulative entries include their callees, so they are listed after what they may contain
# and only own time is attributed to the first three.
_BREAKDOWN: tuple[tuple[str, Callable[[str, str], bool], str], ...] = (
    ("codec library decompress", lambda f, n: "decompress" in n and "bale" not in f, "own"),
    ("pread (copy from page cache / disk)", lambda f, n: "posix.pread" in n, "own"),
    ("xxh3 checksum", lambda f, n: "xxh3" in n, "own"),
    ("codec_from_config (codec construction)", lambda f, n: n == "codec_from_config", "cum"),
    ("bytes row copies (VarRows.row)", lambda f, n: f.endswith("blocks.py") and n == "row", "cum"),
)


def profile_read(fmt: Format, path: Path, piece_rows: int, top: int = 8) -> dict[str, Any]:
    """One warm read under cProfile: the top functions by own time, and a breakdown of the
    total into codec, I/O, checksum and the rest (Python overhead in bale's reader)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in fmt.read(path, piece_rows):
        pass
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("tottime").print_stats(top)
    lines = stream.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    # {(file, line, name): (primitive calls, calls, own time, cumulative time, callers)}
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in entries.values())
    breakdown: dict[str, float] = {}
    for label, match, which in _BREAKDOWN:
        breakdown[label] = sum(
            v[2] if which == "own" else v[3]
            for (file, _, name), v in entries.items()
            if match(file, name)
        )
    breakdown["everything else (bale reader Python, numpy, allocation)"] = total - sum(
        breakdown.values()
    )
    return {
        "total_s": total,
        "breakdown_s": breakdown,
        "top": [line.rstrip() for line in lines[start : start + top + 1] if line.strip()],
    }


# -- data kinds -------------------------------------------------------------------------------


def make_kinds(cfg: Config) -> Iterator[Kind]:
    """Generated one at a time so only one kind's data is in memory."""
    jpegs, labels = photo_data.jpeg_images(cfg.n_jpeg, seed=0)
    yield Kind(
        "jpeg",
        f"{cfg.n_jpeg} JPEGs ~375x500 q90 (bytes column) + int64 label",
        {"jpeg": jpegs, "label": labels},
    )
    del jpegs, labels
    yield Kind(
        "uint8_images",
        f"uint8 images ({cfg.n_uint8}, 64, 64, 3)",
        {"image": photo_data.uint8_images(cfg.n_uint8, seed=1)},
    )
    yield Kind(
        "sparse_activations",
        f"float32 ReLU activations ({cfg.n_act}, 32, 16, 16)",
        {"activation": photo_data.sparse_activations(cfg.n_act, seed=2)},
    )


def bench_kind(cfg: Config, kind: Kind) -> dict[str, Any]:
    """All measurements of one data kind. Repeats run round-robin over the formats, so a burst
    of load from elsewhere on the machine hits every format alike rather than one of them."""
    raw = kind.raw_bytes
    print(f"\n== {kind.name}: {kind.description}, {raw / MB:.1f} MB raw, {kind.rows} rows")
    load = ForeignLoad()
    assert FORMATS[0].name == "bale", "bale is written first: it sets the piece size"
    paths = {fmt.name: (WORK / kind.name).with_suffix(fmt.suffix) for fmt in FORMATS}
    writes: dict[str, list[float]] = {fmt.name: [] for fmt in FORMATS}
    piece_rows = 0
    codecs: dict[str, Any] = {}
    for _ in range(cfg.repeats):
        for fmt in FORMATS:
            writes[fmt.name].append(timed_write(fmt, paths[fmt.name], kind, piece_rows))
            if not piece_rows:
                piece_rows, codecs = bale_layout(paths["bale"])
    for fmt in FORMATS:
        verify_contents(fmt, paths[fmt.name], kind, piece_rows)  # also warms the page cache
    warm: dict[str, list[tuple[float, int]]] = {fmt.name: [] for fmt in FORMATS}
    cold: dict[str, list[tuple[float, int]]] = {fmt.name: [] for fmt in FORMATS}
    resident: dict[str, list[int | None]] = {fmt.name: [] for fmt in FORMATS}
    for _ in range(cfg.repeats):
        for fmt in FORMATS:
            warm[fmt.name].append(timed_read(fmt, paths[fmt.name], piece_rows, raw))
    for _ in range(cfg.repeats):
        for fmt in FORMATS:
            files = files_of(paths[fmt.name])
            evict(files)
            resident[fmt.name].append(resident_bytes(files))
            cold[fmt.name].append(timed_read(fmt, paths[fmt.name], piece_rows, raw))
    profile = profile_read(FORMATS[0], paths["bale"], piece_rows)
    results: dict[str, Any] = {}
    for fmt in FORMATS:
        files = files_of(paths[fmt.name])
        results[fmt.name] = format_result(
            raw, files, writes[fmt.name], warm[fmt.name], cold[fmt.name], resident[fmt.name]
        )
        r = results[fmt.name]
        print(
            f"{fmt.name:12s} size {r['size_bytes'] / MB:8.1f} MB  write "
            f"{r['write_MBps']['median']:7.0f}  warm read {r['warm_read_MBps']['median']:7.0f}"
            f"  cold read {r['cold_read_MBps']['median']:7.0f} MB/s"
        )
        remove(paths[fmt.name])
    result: dict[str, Any] = {
        "description": kind.description,
        "rows": kind.rows,
        "raw_bytes": raw,
        "piece_rows": piece_rows,
        "bale_codecs": codecs,
        "bale_read_profile": profile,
        "formats": results,
        "foreign_load": load.result(),
    }
    print(f"other processes used {result['foreign_load']['foreign_cores']:.2f} cores meanwhile")
    return result


def bale_layout(path: Path) -> tuple[int, dict[str, Any]]:
    """Rows per row group and the codec bale chose per column. Every other format reads (and
    h5py chunks) in bale's row-group size, so all read the same sequential pieces; h5py chunks
    are then ~4 MiB, a usual h5py choice."""
    with bale.open(path) as ds:
        rows = ds.row_group_sizes[0]
        codecs = {c.name: dict(c.codec) for c in ds.schema}
        print(f"bale chose codecs {codecs}; {ds.num_row_groups} row groups of {rows} rows")
    return rows, codecs


def format_result(
    raw: int,
    files: list[Path],
    writes: list[float],
    warm: list[tuple[float, int]],
    cold: list[tuple[float, int]],
    resident: list[int | None],
) -> dict[str, Any]:
    return {
        "size_bytes": sum(p.stat().st_size for p in files),
        "disk_bytes": sum(p.stat().st_blocks * 512 for p in files),
        "write_s": writes,
        "warm_read_s": [s for s, _ in warm],
        "cold_read_s": [s for s, _ in cold],
        "warm_device_read_bytes": [b for _, b in warm],
        "cold_device_read_bytes": [b for _, b in cold],
        "resident_after_evict_bytes": resident,
        "write_MBps": mbps(raw, writes),
        "warm_read_MBps": mbps(raw, [s for s, _ in warm]),
        "cold_read_MBps": mbps(raw, [s for s, _ in cold]),
    }


# -- open time --------------------------------------------------------------------------------


def open_columns(rows: int) -> dict[str, ColumnData]:
    rng = np.random.default_rng(4)
    return {
        "label": (np.arange(rows) % 1000).astype(np.int64),
        "feature": rng.standard_normal((rows, 16), dtype=np.float32),
        "key": [b"img-%08d" % i for i in range(rows)],
    }


def write_open_h5(path: Path, columns: dict[str, ColumnData]) -> None:
    with h5py.File(path, "w") as f:
        for name, column in columns.items():
            if isinstance(column, np.ndarray):
                f.create_dataset(name, data=column, chunks=True, compression="lzf")
            else:
                # Short keys as h5py variable-length bytes strings, the idiomatic choice (a vlen
                # uint8 dataset cannot be written from equal-length rows: h5py makes them 2-d).
                keys = np.empty(len(column), dtype=object)
                keys[:] = column
                f.create_dataset(
                    name,
                    data=keys,
                    dtype=h5py.string_dtype("ascii"),
                    chunks=True,
                    compression="lzf",
                )


def open_bale(path: str) -> None:
    ds = bale.open(path)
    len(ds)
    ds.close()


def open_h5(path: str) -> None:
    with h5py.File(path, "r") as f:
        # Looking up the datasets and their shapes is part of what is timed.
        shapes = [f[name].shape for name in ("label", "feature", "key")]
    assert all(s[0] > 0 for s in shapes)


OPENERS: dict[str, Callable[[str], None]] = {"bale": open_bale, "h5py": open_h5}


def time_open(opener: Callable[[str], None], path: Path, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        opener(str(path))
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def open_child(which: str, path: str) -> None:
    """Fresh process, file evicted from the page cache: the first open a DataLoader worker pays."""
    evict([Path(path)])
    t0 = time.perf_counter()
    OPENERS[which](path)
    print(json.dumps({"ms": (time.perf_counter() - t0) * 1e3}))


def time_open_fresh(which: str, path: Path, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-m", "bench.format_bench", "--open-child", which, str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        out.append(float(json.loads(done.stdout.strip().splitlines()[-1])["ms"]))
    return out


def bench_open(cfg: Config) -> dict[str, Any]:
    rows = cfg.open_rows
    print(f"\n== open time at {rows} rows")
    load = ForeignLoad()
    columns = open_columns(rows)
    variants: dict[str, tuple[str, Path]] = {
        "bale (default row groups)": ("bale", WORK / "open.bale"),
        "bale (1000-row groups)": ("bale", WORK / "open_small_groups.bale"),
        "h5py (lzf, File + 3 datasets)": ("h5py", WORK / "open.h5"),
    }
    bale.write(variants["bale (default row groups)"][1], columns, overwrite=True)
    # A many-groups file shows how open time scales with the footer's index size.
    bale.write(variants["bale (1000-row groups)"][1], columns, overwrite=True, row_group_rows=1000)
    write_open_h5(variants["h5py (lzf, File + 3 datasets)"][1], columns)
    out: dict[str, Any] = {"rows": rows, "variants": {}}
    for label, (which, path) in variants.items():
        groups = bale_row_groups(path) if which == "bale" else None
        warm = time_open(OPENERS[which], path, cfg.open_repeats)
        fresh = time_open_fresh(which, path, cfg.open_fresh_repeats)
        out["variants"][label] = {
            "row_groups": groups,
            "size_bytes": path.stat().st_size,
            "reopen_ms": warm,
            "reopen_summary": summary(warm),
            "fresh_process_cold_ms": fresh,
            "fresh_summary": summary(fresh),
        }
        print(
            f"{label:32s} reopen median {statistics.median(warm):7.2f} ms, "
            f"fresh process + cold cache {statistics.median(fresh):7.2f} ms"
        )
        remove(path)
    out["foreign_load"] = load.result()
    return out


def bale_row_groups(path: Path) -> int:
    with bale.open(path) as ds:
        return ds.num_row_groups


# -- peak RSS while streaming -------------------------------------------------------------------


def rss_child(which: str, path: str, total: int, checkpoint: int) -> None:
    """Stream ``total`` raw bytes of 64x64x3 uint8 images to ``path``, reporting RSS as it goes.

    Batches are random rows of a small pool of real-photo images (25 MB), so the generator
    itself needs almost no memory and RSS growth can only come from the writer.
    """
    pool = photo_data.uint8_images(2048, seed=3)
    row_bytes = pool[0].nbytes
    chunk_rows = DEFAULT_ROW_GROUP_BYTES // row_bytes
    batch_rows = 3 * chunk_rows  # a whole number of h5py chunks: no partial-chunk rewrites
    rng = np.random.default_rng(5)
    reset_ok = reset_peak_rss()
    start = vm_status()
    samples: list[dict[str, int]] = []
    written, next_mark = 0, checkpoint
    t0 = time.perf_counter()
    append, close = _stream_writer(which, Path(path), pool.shape[1:], chunk_rows)
    while written < total:
        batch = pool[rng.integers(0, len(pool), batch_rows)]
        append(batch)
        written += batch.nbytes
        if written >= next_mark:
            samples.append({"written": written, **vm_status()})
            next_mark += checkpoint
    close()
    seconds = time.perf_counter() - t0
    samples.append({"written": written, **vm_status(), "closed": 1})
    result = {
        "writer": which,
        "raw_bytes": written,
        "file_bytes": Path(path).stat().st_size,
        "seconds": seconds,
        "MBps": written / seconds / MB,
        "hwm_reset": reset_ok,
        "batch_bytes": batch_rows * row_bytes,
        "h5py_chunk_bytes": chunk_rows * row_bytes,
        "start": start,
        "samples": samples,
    }
    print(json.dumps(result))


def _stream_writer(
    which: str, path: Path, row_shape: tuple[int, ...], chunk_rows: int
) -> tuple[Callable[[NDArray[np.uint8]], None], Callable[[], None]]:
    if which == "bale":
        writer = bale.Writer(path, overwrite=True)
        return (lambda batch: writer.write({"image": batch})), writer.close
    f = h5py.File(path, "w")
    ds = f.create_dataset(
        "image",
        shape=(0, *row_shape),
        maxshape=(None, *row_shape),
        chunks=(chunk_rows, *row_shape),
        dtype=np.uint8,
        compression="lzf",  # gzip-4 would take minutes for 4 GB; lzf is the fast h5py filter
    )

    def append(batch: NDArray[np.uint8]) -> None:
        n = ds.shape[0]
        ds.resize(n + len(batch), axis=0)
        ds[n:] = batch

    def close() -> None:
        f.close()
        fsync_path(path)

    return append, close


def bench_rss(cfg: Config) -> dict[str, Any]:
    print(f"\n== peak RSS while streaming {cfg.rss_bytes / MB:.0f} MB raw")
    load = ForeignLoad()
    out: dict[str, Any] = {}
    for which in ("bale", "h5py"):
        path = WORK / f"stream.{which}"
        try:
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.format_bench",
                    "--rss-child",
                    which,
                    str(path),
                    str(cfg.rss_bytes),
                    str(cfg.rss_checkpoint),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
        finally:
            for p in (path, Path(str(path) + ".partial")):
                remove(p)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        peaks = [s["VmHWM"] for s in result["samples"]]
        result["peak_growth_after_first_checkpoint_MB"] = (peaks[-1] - peaks[0]) / MB
        result["flat"] = result["peak_growth_after_first_checkpoint_MB"] < FLAT_RSS_MB
        out[which] = result
        print(
            f"{which:5s} {result['MBps']:6.0f} MB/s, file {result['file_bytes'] / MB:.0f} MB, "
            f"peak RSS {peaks[-1] / MB:.0f} MB (start {result['start']['VmRSS'] / MB:.0f} MB, "
            f"growth after first checkpoint {result['peak_growth_after_first_checkpoint_MB']:.1f}"
            " MB)"
        )
    return {"writers": out, "foreign_load": load.result()}


# -- aims -------------------------------------------------------------------------------------


@dataclass
class Verdict:
    aim: str
    passed: bool
    detail: str
    # Average cores other processes used while this was measured (see load_section).
    foreign_cores: float = 0.0

    @property
    def disturbed(self) -> bool:
        return self.foreign_cores > FOREIGN_WARN_CORES

    @property
    def word(self) -> str:
        return "PASS" if self.passed else "MISS"


def judge(kinds: dict[str, Any], open_result: dict[str, Any]) -> list[Verdict]:
    verdicts = []
    for name, k in kinds.items():
        f = k["formats"]
        load = k["foreign_load"]["foreign_cores"]
        bale_size, gzip_size = f["bale"]["size_bytes"], f["h5py gzip-4"]["size_bytes"]
        excess = bale_size / gzip_size - 1
        verdicts.append(
            Verdict(
                f"{name}: size <= h5py gzip-4",
                bale_size <= gzip_size,
                f"bale {bale_size / MB:.1f} MB vs gzip-4 {gzip_size / MB:.1f} MB ({excess:+.1%})",
            )
        )
        for cache in ("warm", "cold"):
            key = f"{cache}_read_MBps"
            b = f["bale"][key]["median"]
            gz, lzf = f["h5py gzip-4"][key]["median"], f["h5py lzf"][key]["median"]
            verdicts.append(
                Verdict(
                    f"{name}: {cache} read >= {AIM_READ_VS_GZIP:g}x h5py gzip-4",
                    b >= AIM_READ_VS_GZIP * gz,
                    f"bale {b:.0f} MB/s = {b / gz:.2f}x gzip-4 ({gz:.0f} MB/s)",
                    load,
                )
            )
            verdicts.append(
                Verdict(
                    f"{name}: {cache} read > h5py lzf",
                    b > lzf,
                    f"bale {b:.0f} MB/s = {b / lzf:.2f}x lzf ({lzf:.0f} MB/s)",
                    load,
                )
            )
    default = open_result["variants"]["bale (default row groups)"]
    ms = default["reopen_summary"]["median"]
    fresh = default["fresh_summary"]["median"]
    verdicts.append(
        Verdict(
            f"open at {open_result['rows']} rows < {AIM_OPEN_MS:g} ms",
            ms < AIM_OPEN_MS,
            f"median of {len(default['reopen_ms'])} reopens {ms:.2f} ms; "
            f"fresh process, cold cache {fresh:.2f} ms",
            open_result["foreign_load"]["foreign_cores"],
        )
    )
    return verdicts


# -- environment and report ---------------------------------------------------------------------


def environment() -> dict[str, Any]:
    env = describe(WORK, ("numpy", "h5py", "blosc2", "zstandard"))
    env["versions"]["hdf5"] = h5py.version.hdf5_version
    return env


def kind_tables(name: str, k: dict[str, Any]) -> list[str]:
    raw = k["raw_bytes"]
    lines = [
        f"### {name}: {k['description']}",
        "",
        f"{raw / MB:.1f} MB raw, {k['rows']} rows; reads in pieces of {k['piece_rows']} rows "
        "(bale's row group; also the h5py chunk). bale chose codecs: "
        + ", ".join(f"`{c}`: `{json.dumps(v)}`" for c, v in k["bale_codecs"].items()),
        "",
        "| format | size MB | size / raw | write MB/s | warm read MB/s | cold read MB/s "
        "| cold: device reads / size | resident after evict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for fmt, r in k["formats"].items():
        dev = statistics.median(r["cold_device_read_bytes"]) / r["size_bytes"]
        res = r["resident_after_evict_bytes"]
        resident = "n/a" if res[0] is None else f"{max(res) / MB:.1f} MB"
        lines.append(
            f"| {fmt} | {r['size_bytes'] / MB:.1f} | {r['size_bytes'] / raw:.3f} "
            f"| {fmt_range(r['write_MBps'])} | {fmt_range(r['warm_read_MBps'])} "
            f"| {fmt_range(r['cold_read_MBps'])} | {dev:.2f} | {resident} |"
        )
    lines += ["", "bale relative to h5py (ratio > 1 is better for bale, except size):", ""]
    lines += ["| vs | size | write | warm read | cold read |", "|---|---:|---:|---:|---:|"]
    b = k["formats"]["bale"]
    for other in ("h5py gzip-4", "h5py lzf"):
        o = k["formats"][other]
        ratios = [b["size_bytes"] / o["size_bytes"]] + [
            b[key]["median"] / o[key]["median"]
            for key in ("write_MBps", "warm_read_MBps", "cold_read_MBps")
        ]
        lines.append(f"| {other} | " + " | ".join(f"{x:.2f}x" for x in ratios) + " |")
    prof = k["bale_read_profile"]
    lines += [
        "",
        f"Where one warm bale read spends its time (cProfile, {prof['total_s'] * 1e3:.0f} ms in "
        "total; profiling inflates Python overhead):",
        "",
        "| part | ms | share |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {label} | {sec * 1e3:.1f} | {sec / prof['total_s']:.0%} |"
        for label, sec in prof["breakdown_s"].items()
    ]
    lines += ["", "Top functions by own time:", "", "```", *prof["top"], "```", ""]
    return lines


def eviction_check(kinds: dict[str, Any]) -> tuple[bool, list[str], list[str]]:
    """Whether every cold read really went to the device, the failures, and the pairs whose cold
    median was not slower than the warm one."""
    ok, failures, not_slower = True, [], []
    for name, k in kinds.items():
        for fmt, r in k["formats"].items():
            size = r["size_bytes"]
            warm, cold = r["warm_read_MBps"]["median"], r["cold_read_MBps"]["median"]
            dev = min(r["cold_device_read_bytes"]) / size
            warm_dev = max(r["warm_device_read_bytes"]) / size
            resident = [b for b in r["resident_after_evict_bytes"] if b is not None]
            evicted = dev > 0.9 and warm_dev < 0.05 and max(resident, default=0) < 0.01 * size
            ok &= evicted
            if not evicted:
                failures.append(
                    f"- {name} / {fmt}: cold device reads {dev:.2f}x size, warm device reads "
                    f"{warm_dev:.2f}x size, resident after evict {max(resident, default=0)} B"
                )
            if cold >= warm:
                not_slower.append(f"- {name} / {fmt}: warm {warm:.0f} MB/s, cold {cold:.0f} MB/s")
    return ok, failures, not_slower


def cold_check_lines(kinds: dict[str, Any]) -> list[str]:
    ok, failures, not_slower = eviction_check(kinds)
    pairs = sum(len(k["formats"]) for k in kinds.values())
    lines = [
        "## Cold-cache check",
        "",
        (
            "Eviction worked for every cold read: each fetched > 90 % of the file size from "
            "the block device (`/proc/self/io` read_bytes; warm reads fetched < 5 %), and "
            "`fincore` (mincore) found < 1 % of the file resident right after eviction."
            if ok
            else "Eviction FAILED (cold numbers below are not cold) for:"
        ),
        *failures,
        "",
        f"Cold median slower than warm median: {pairs - len(not_slower)} of {pairs} "
        "format/kind pairs.",
    ]
    if not_slower:
        lines += [
            "Not slower:",
            "",
            *not_slower,
            "",
            "These are CPU-bound decoders (a few hundred MB/s) while the virtual disk delivers "
            "over 1 GB/s, so the I/O time is within run-to-run noise; the device-read counts "
            "above show the data did come from the disk.",
        ]
    return [
        *lines,
        "",
        "Note: this is a VM on a virtual disk (`/dev/vda`); a cold read in the guest may still "
        "be served from the host's page cache, so cold numbers are an upper bound on what a "
        "physical disk would give.",
        "",
    ]


def report(results: dict[str, Any], verdicts: list[Verdict]) -> str:
    env = results["environment"]
    cfg = results["config"]
    command = ".venv/bin/python -m bench.format_bench" + (" --quick" if cfg["quick"] else "")
    lines = [
        "# bale format benchmark",
        "",
        f"Date: {env['date']}. Reproduce with `{command}`"
        + (" (the full run drops `--quick`)." if cfg["quick"] else "."),
        "",
        *machine_section(
            env,
            env["src_digest"],
            disk="Disk / filesystem",
        ),
        "",
        "## Method",
        "",
        "Data from `bench/photo_data.py` (real scikit-image photos, deterministic seeds). Each "
        "format is written from the in-memory columns in one call (`bale.write`, `np.save`, "
        "`h5py create_dataset(data=...)`), fsync included. Reads go through the whole data "
        "sequentially, in pieces of one bale row group, into NumPy (`Dataset.iter_row_groups`; "
        "copies of `np.load(mmap_mode='r')` slices; chunk-aligned h5py slices), and include "
        "opening the file. Cold reads follow `os.sync()` + `posix_fadvise(DONTNEED)` of every "
        "file. Every value is the median (min-max) of "
        f"{cfg['repeats']} repeats, run round-robin over the formats; 1 MB = 10^6 bytes; MB/s counts raw (uncompressed) bytes. "
        "Contents are checked equal to the input once per format (untimed). JPEG bytes in h5py "
        "use a `vlen_dtype(uint8)` dataset: HDF5 filters only compress its heap descriptors. "
        "This is a VM: fsync may complete once the hypervisor holds the data, so write speeds "
        "may exceed what a physical disk sustains.",
        "",
        "## Aims",
        "",
        "*Disturbed*: other processes used more than "
        f"{FOREIGN_WARN_CORES:g} cores on average while it was measured (sizes never are).",
        "",
        "| aim | verdict | measured | disturbed |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {v.aim} | **{v.word}** | {v.detail} | "
        f"{f'yes ({v.foreign_cores:.2f} cores)' if v.disturbed else 'no'} |"
        for v in verdicts
    ]
    lines += ["", *miss_notes(results, verdicts), *cold_check_lines(results["kinds"])]
    lines += [
        "## Size, write and sequential read",
        "",
    ]
    for name, k in results["kinds"].items():
        lines += kind_tables(name, k)
    lines += open_section(results["open"]) + rss_section(results["rss"])
    lines += load_section(results)
    return "\n".join(lines) + "\n"


def open_section(o: dict[str, Any]) -> list[str]:
    lines = [
        f"## Open time at {o['rows']} rows",
        "",
        "Columns: int64 label, float32 (16,) feature, ~12-byte bytes key. *Reopen*: open, "
        "`len()`, close, repeated in one process (warm page cache). *Fresh*: a new process "
        "(imports done before timing) after evicting the file from the page cache.",
        "",
        "| file | row groups | size MB | reopen ms | fresh process, cold cache ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, v in o["variants"].items():
        groups = "" if v["row_groups"] is None else str(v["row_groups"])
        lines.append(
            f"| {label} | {groups} | {v['size_bytes'] / MB:.1f} | "
            f"{fmt_range(v['reopen_summary'], 2)} | {fmt_range(v['fresh_summary'], 2)} |"
        )
    return [*lines, ""]


def rss_section(rss_result: dict[str, Any]) -> list[str]:
    rss = rss_result["writers"]
    first = next(iter(rss.values()))
    lines = [
        "## Peak RSS while streaming a large file",
        "",
        "A subprocess per writer streams batches of 64x64x3 uint8 images "
        f"({first['batch_bytes'] / MB:.1f} MB each, random rows of a 25 MB pool of "
        "real-photo crops) through `bale.Writer.write` (default codecs) or an h5py dataset "
        f"grown with `resize` (lzf, {first['h5py_chunk_bytes'] / MB:.1f} MB chunks, three per "
        "batch). Peak RSS is VmHWM, reset after set-up (imports, the pool) via "
        "`/proc/self/clear_refs`. The files are deleted afterwards.",
        "",
        "| writer | raw MB | file MB | MB/s | RSS at start MB | peak RSS MB | peak - start MB "
        "| peak growth after first checkpoint MB | flat |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for which, r in rss.items():
        peak, begin = r["samples"][-1]["VmHWM"], r["start"]["VmRSS"]
        lines.append(
            f"| {which} | {r['raw_bytes'] / MB:.0f} | {r['file_bytes'] / MB:.0f} | "
            f"{r['MBps']:.0f} | {begin / MB:.0f} | {peak / MB:.0f} | {(peak - begin) / MB:.0f} | "
            f"{r['peak_growth_after_first_checkpoint_MB']:.1f} | "
            f"{'yes' if r['flat'] else 'NO'} |"
        )
    lines += ["", "RSS / peak RSS (MB) after each checkpoint of raw bytes written:", ""]
    names = list(rss)
    lines += ["| written MB | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    count = max(len(r["samples"]) for r in rss.values())
    for i in range(count):
        cells, written = [], 0
        for which in names:
            samples = rss[which]["samples"]
            if i < len(samples):
                s = samples[i]
                written = s["written"]
                tag = " (closed)" if s.get("closed") else ""
                cells.append(f"{s['VmRSS'] / MB:.0f} / {s['VmHWM'] / MB:.0f}{tag}")
            else:
                cells.append("")
        lines.append(f"| {written / MB:.0f} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def miss_notes(results: dict[str, Any], verdicts: list[Verdict]) -> list[str]:
    """By how much each kind misses, with the measurements that point at a cause."""
    lines = ["## Notes on the misses", ""]
    misses = [v for v in verdicts if not v.passed]
    if not misses:
        return [*lines, "None: every aim was met.", ""]
    for name, k in results["kinds"].items():
        mine = [v for v in misses if v.aim.startswith(f"{name}:")]
        if not mine:
            continue
        f = k["formats"]
        prof = k["bale_read_profile"]
        share = {label: sec / prof["total_s"] for label, sec in prof["breakdown_s"].items()}
        top = sorted(share, key=share.__getitem__, reverse=True)[:3]
        codecs = ", ".join(f"`{c}` {v['id']}" for c, v in k["bale_codecs"].items())
        lines.append(
            f"- **{name}** misses: "
            + "; ".join(f"{v.aim.split(': ', 1)[1]} ({v.detail})" for v in mine)
            + "."
        )
        lines.append(
            f"  bale codecs: {codecs}. Warm-read profile: "
            + ", ".join(f"{label} {share[label]:.0%}" for label in top)
            + "."
        )
        if any(c["id"] == "none" for c in k["bale_codecs"].values()) and any(
            "read" in v.aim for v in mine
        ):
            lines.append(
                "  The payload is stored uncompressed by bale (codec none) and sits unfiltered "
                "in h5py's global heap too (HDF5 filters only touch the vlen descriptors), so "
                "neither gzip-4 nor lzf decompresses anything here: the read aims measure "
                "per-row and per-row-group overhead, not codecs."
            )
        if any("cold read" in v.aim for v in mine):
            extra = {
                fmt: (
                    statistics.median(f[fmt]["cold_read_s"])
                    - statistics.median(f[fmt]["warm_read_s"])
                )
                * 1e3
                for fmt in ("bale", "npy", "h5py gzip-4", "h5py lzf")
            }
            lines.append(
                "  Extra time of a cold over a warm read: "
                + ", ".join(f"{fmt} {ms:+.0f} ms" for fmt, ms in extra.items())
                + ". Hypothesis: bale waits for each row group's pread and then decodes it on "
                "the same thread, so device time that read-ahead has not hidden adds to the "
                "read time in full."
            )
        size_miss = [v for v in mine if "size" in v.aim]
        if size_miss:
            lines.append(
                "  Size: the chosen codec compresses less than deflate-4 on this data; "
                "see bench/results/advisor_bench.md (`python -m bench.advisor_bench`) for the "
                "codecs measured against h5py gzip-4 and lzf."
            )
    open_miss = [v for v in misses if v.aim.startswith("open")]
    lines += [f"- **open** misses: {v.detail}." for v in open_miss]
    return [*lines, ""]


def load_section(results: dict[str, Any]) -> list[str]:
    sections = {f"kind {name}": k["foreign_load"] for name, k in results["kinds"].items()}
    sections["open time"] = results["open"]["foreign_load"]
    sections["peak RSS"] = results["rss"]["foreign_load"]
    lines = [
        "## Other load on the machine",
        "",
        "CPU time used by other processes while each section ran (machine busy time from "
        "`/proc/stat` minus this benchmark's own CPU time). On this 2-core machine, more than "
        f"{FOREIGN_WARN_CORES:g} cores on average means the timings above were disturbed.",
        "",
        "| section | wall s | other processes, CPU s | average cores | disturbed |",
        "|---|---:|---:|---:|---|",
    ]
    for name, load in sections.items():
        lines.append(
            f"| {name} | {load['wall_s']:.0f} | {load['foreign_cpu_s']:.1f} | "
            f"{load['foreign_cores']:.2f} | "
            f"{'YES' if load['foreign_cores'] > FOREIGN_WARN_CORES else 'no'} |"
        )
    return [*lines, ""]


# -- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, ~1 minute")
    parser.add_argument("--open-child", nargs=2, metavar=("WHICH", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--rss-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.open_child:
        open_child(*args.open_child)
        return
    if args.rss_child:
        which, path, total, checkpoint = args.rss_child
        rss_child(which, path, int(total), int(checkpoint))
        return

    signal.signal(signal.SIGTERM, exit_on_sigterm)
    cfg = Config.make(args.quick)
    WORK.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results: dict[str, Any] = {"environment": environment(), "config": vars(cfg)}
    try:
        results["kinds"] = {kind.name: bench_kind(cfg, kind) for kind in make_kinds(cfg)}
        results["open"] = bench_open(cfg)
        results["rss"] = bench_rss(cfg)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    verdicts = judge(results["kinds"], results["open"])
    results["aims"] = [
        {"aim": v.aim, "verdict": v.word, "detail": v.detail, "disturbed": v.disturbed}
        for v in verdicts
    ]
    results["eviction_ok"] = eviction_check(results["kinds"])[0]
    results["total_seconds"] = time.perf_counter() - t0
    written = write_report("format_bench", results, report(results, verdicts), quick=cfg.quick)
    print("\n== aims")
    for v in verdicts:
        print(f"{v.word}  {v.aim}: {v.detail}" + ("  [disturbed]" if v.disturbed else ""))
    print(f"eviction check: {'ok' if results['eviction_ok'] else 'FAILED'}")
    loads = [k["foreign_load"] for k in results["kinds"].values()]
    loads += [results["open"]["foreign_load"], results["rss"]["foreign_load"]]
    worst = max(load["foreign_cores"] for load in loads)
    if worst > FOREIGN_WARN_CORES:
        print(f"WARNING: other processes used up to {worst:.2f} cores: timings are disturbed")
    print(f"total {results['total_seconds']:.0f} s; wrote {written}")


if __name__ == "__main__":
    main()
