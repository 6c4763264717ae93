"""Random single rows and scattered gathers from bale files, with and without frame reads.

    .venv/bin/python -m bench.random_access_bench            # full run, a few minutes
    .venv/bin/python -m bench.random_access_bench --quick    # small data, under a minute

The benchmark suite's three kinds (bench/suite/data.py: JPEG bytes, 64x64x3 uint8 images,
sparse float32 activations, each with an int64 label) are written three or four times with bale's
default codecs and row groups: by default (``segment_bytes`` of 1 GiB: every block one frame,
as bale 1.0 wrote), with ``random_access=True`` (frames of about 16 KiB fitted to whole rows of
the widest compressed column, and a frame index: a row decodes only the frames that hold it),
with 64 KiB frames (the first random-access layout, for comparison), and for the arrays
uncompressed (codec ``none``: rows read from a mapping of the file). In the same process,
for each file: latency of ``ds[i]`` (all columns) and of ``ds.row(i, [x])`` at random indices,
warm (file in the page cache, bale's block cache at its default 64 MiB, smaller than every file
here) and cold (page cache dropped before each row, a fresh Dataset; the bytes read from the
file by that row are counted), a gather of 64 random rows (``ds.take``, with its default pool
of decoding threads and with one thread), a shuffled batch of 64
through ``torch.utils.data.DataLoader(TorchDataset(path), batch_size=64, shuffle=True)`` (NumPy
memmap: the same DataLoader over a map-style dataset whose ``__getitems__`` indexes the memmap),
sequential decoding of ``x`` (every row group in order, block cache off: MB/s of raw data per
second of CPU time) and the file size. NumPy ``np.load(mmap_mode="r")`` of the same arrays is
the reference for the arrays. Medians of repeated runs, round-robin.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

import bale
from bale._core import parallel
from bale._core.dataset import reader_of
from bale.io.pagecache import evict_files, read_through
from bench.machine import report_head, stamp
from bench.results import OUT, write_report
from bench.stats import fmt_range, summary
from bench.suite import data

WORK = OUT / "random_access"
KINDS = data.KINDS


def write_files(kind: str, source: data.Source) -> dict[str, Path]:
    files = {}
    columns = {"x": source.x, "label": source.label}
    layouts: tuple[tuple[str, dict[str, Any]], ...] = (
        ("default", {}),
        ("random_access=True", {"random_access": True}),
        ("64 KiB frames", {"random_access": True, "segment_bytes": 64 << 10}),
    )
    if not source.spec.is_bytes:  # arrays stored as they are: rows read from the file's mapping
        layouts += (("uncompressed", {"codecs": {"x": "none"}}),)
    for k, (name, options) in enumerate(layouts):
        path = WORK / f"{kind}-{k}.bale"
        bale.write(path, columns, overwrite=True, **options)
        files[name] = path
    if not source.spec.is_bytes:
        np.save(WORK / f"{kind}.npy", np.asarray(source.x))
    return files


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def warm_rows(path: Path, indices: list[int], columns: list[str] | None) -> list[float]:
    times = []
    with bale.open(path) as ds:
        ds.row(indices[0], columns)  # the index and codecs loaded: not part of a row's cost
        for i in indices:
            t0 = time.perf_counter()
            ds.row(i, columns)
            times.append(time.perf_counter() - t0)
    return times


def cold_rows(path: Path, indices: list[int]) -> tuple[list[float], list[float]]:
    """Latency of a cold row, and the bytes read from the file for it (after the footer)."""
    times, read_bytes = [], []
    for i in indices:
        evict_files([path])
        with bale.open(path) as ds:
            source = reader_of(ds).source
            read = source.read
            sizes: list[int] = []

            def counting(offset: int, size: int, read: Any = read, sizes: list[int] = sizes) -> Any:
                sizes.append(size)
                return read(offset, size)

            source.read = counting  # type: ignore[method-assign]
            t0 = time.perf_counter()
            ds.row(i)
            times.append(time.perf_counter() - t0)
            read_bytes.append(float(sum(sizes)))
    return times, read_bytes


def loader_batches(path: Path, batches: int, seed: int) -> list[float]:
    """Seconds per batch of 64 of a shuffled DataLoader over the map-style TorchDataset."""
    import torch
    from torch.utils.data import DataLoader

    from bale.adapters.torch import TorchDataset

    dataset = TorchDataset(path)
    loader = DataLoader(
        dataset, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    times = timed_batches(iter(loader), batches)
    dataset.close()
    return times


class NpyRows:
    """A map-style dataset over a memmapped .npy, batched the fastest way: one fancy index."""

    def __init__(self, path: Path) -> None:
        self.array = np.load(path, mmap_mode="r")

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i: int) -> Any:
        return np.array(self.array[i])

    def __getitems__(self, indices: list[int]) -> list[Any]:
        return list(self.array[np.asarray(indices)])


def npy_loader_batches(path: Path, batches: int, seed: int) -> list[float]:
    import torch
    from torch.utils.data import DataLoader

    loader: DataLoader[Any] = DataLoader(
        NpyRows(path),  # type: ignore[arg-type]
        batch_size=64,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    return timed_batches(iter(loader), batches)


def timed_batches(batches: Any, count: int) -> list[float]:
    next(batches)  # workers, generator and file set up: not part of a batch's cost
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        try:
            next(batches)
        except StopIteration:
            break
        times.append(time.perf_counter() - t0)
    return times


def sequential_mbps(path: Path) -> float:
    """Raw MB of x decoded per CPU second, every row group in order, no block cache."""
    with bale.open(path, cache_bytes=0) as ds:
        x = ds.schema.index("x")
        t0 = time.process_time()
        for group in range(ds.num_row_groups):
            ds.read_row_group(group, ["x"])
        seconds = time.process_time() - t0
        return float(ds.index.blocks["raw_size"][:, x].sum()) / 1e6 / max(seconds, 1e-9)


def gathers(path: Path, batches: list[np.ndarray], threads: int | None = None) -> list[float]:
    """``ds.take`` of each batch; ``threads``: the gather pool's size (None: bale's default)."""
    default = parallel.MAX_THREADS
    parallel.MAX_THREADS = threads or default
    try:
        return _gathers(path, batches)
    finally:
        parallel.MAX_THREADS = default


def _gathers(path: Path, batches: list[np.ndarray]) -> list[float]:
    times = []
    with bale.open(path) as ds:
        ds.take(batches[0][:1])
        for idx in batches:
            t0 = time.perf_counter()
            ds.take(idx)
            times.append(time.perf_counter() - t0)
    return times


def npy_rows(path: Path, indices: list[int]) -> list[float]:
    array = np.load(path, mmap_mode="r")
    times = []
    for i in indices:
        t0 = time.perf_counter()
        np.array(array[i])
        times.append(time.perf_counter() - t0)
    return times


def npy_gathers(path: Path, batches: list[np.ndarray]) -> list[float]:
    array = np.load(path, mmap_mode="r")
    times = []
    for idx in batches:
        t0 = time.perf_counter()
        array[np.sort(idx)]
        times.append(time.perf_counter() - t0)
    return times


def file_facts(path: Path) -> dict[str, Any]:
    with bale.open(path) as ds:
        x = ds.schema.index("x")
        codec = ds.index.codec_at(0, x)
        return {
            "bytes": path.stat().st_size,
            "row_groups": ds.num_row_groups,
            "codec": codec,
            "segment_bytes": ds.index.segment_bytes,
        }


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    WORK.mkdir(parents=True, exist_ok=True)
    rows = (
        {"jpeg": 400, "uint8": 3000, "act": 800}
        if cfg.quick
        else {"jpeg": 2000, "uint8": 16000, "act": 4000}
    )
    results: dict[str, Any] = {"kinds": {}}
    for kind in KINDS:
        data.prepare(WORK / "data", kind, rows[kind])
        source = data.load(WORK / "data", kind)
        files = write_files(kind, source)
        rng = np.random.default_rng(7)
        n = len(source)
        kind_result: dict[str, Any] = {
            "rows": n,
            "raw_bytes": source.spec.raw_bytes,
            "files": {name: file_facts(p) for name, p in files.items()},
            "cases": {},
        }
        cases: dict[str, dict[str, list[float]]] = {}
        for repeat in range(cfg.repeats):
            indices = rng.integers(0, n, cfg.rows).tolist()
            cold = rng.integers(0, n, cfg.cold_rows).tolist()
            batches = [rng.integers(0, n, 64) for _ in range(cfg.gathers)]
            for name, path in files.items():
                case = cases.setdefault(name, {})
                gc.collect()
                read_through([path])
                warm = (
                    ("row all columns, warm", warm_rows(path, indices, None)),
                    ("row x only, warm", warm_rows(path, indices, ["x"])),
                    ("gather 64 rows, warm", gathers(path, batches)),
                    ("gather 64 rows, one thread, warm", gathers(path, batches, 1)),
                    ("DataLoader batch of 64, warm", loader_batches(path, cfg.gathers, repeat)),
                )
                cold_times, cold_bytes = cold_rows(path, cold)  # last: it evicts the file
                for label, times in (*warm, ("row all columns, cold", cold_times)):
                    case.setdefault(label + " p50", []).append(percentile(times, 50))
                    case.setdefault(label + " p99", []).append(percentile(times, 99))
                case.setdefault("cold row bytes read p50", []).append(percentile(cold_bytes, 50))
                case.setdefault("cold row bytes read max", []).append(max(cold_bytes))
                case.setdefault("sequential MB/s", []).append(sequential_mbps(path))
            if not source.spec.is_bytes:
                case = cases.setdefault("npy memmap", {})
                npy = WORK / f"{kind}.npy"
                read_through([npy])
                case.setdefault("row x only, warm p50", []).append(
                    percentile(npy_rows(npy, indices), 50)
                )
                case.setdefault("gather 64 rows, warm p50", []).append(
                    percentile(npy_gathers(npy, batches), 50)
                )
                case.setdefault("DataLoader batch of 64, warm p50", []).append(
                    percentile(npy_loader_batches(npy, cfg.gathers, repeat), 50)
                )
            print(
                f"[{repeat}] {kind}: "
                + ", ".join(
                    f"{name} {statistics.median(c['row all columns, warm p50']) * 1e6:.0f} us"
                    for name, c in cases.items()
                    if "row all columns, warm p50" in c
                )
            )
        kind_result["cases"] = {
            name: {label: summary(values) for label, values in case.items()}
            for name, case in cases.items()
        }
        results["kinds"][kind] = kind_result
    return results


def report(results: dict[str, Any], cfg: argparse.Namespace) -> str:
    lines = [
        *report_head("bale random access: single rows and scattered gathers", results, __doc__),
        f"{cfg.rows} random rows per warm run, {cfg.cold_rows} per cold run, {cfg.gathers} gathers "
        f"of 64 rows; {cfg.repeats} repeats, median (min-max) of the per-run percentiles. "
        "Times in microseconds.",
        "",
    ]
    labels = [
        "row all columns, warm p50",
        "row all columns, warm p99",
        "row x only, warm p50",
        "gather 64 rows, warm p50",
        "gather 64 rows, one thread, warm p50",
        "DataLoader batch of 64, warm p50",
        "row all columns, cold p50",
    ]
    for kind, k in results["kinds"].items():
        cases = k["cases"]
        lines += [
            f"## {kind}: {data.DESCRIPTIONS[kind]}",
            "",
            f"{k['rows']} rows, {k['raw_bytes'] / 1e6:.0f} MB of x. Codec of x: "
            f"`{k['files']['default']['codec']}`.",
            "",
            "| file | " + " | ".join(labels) + " |",
            "|---|" + "---:|" * len(labels),
        ]
        for name, case in cases.items():
            cells = [
                fmt_range({key: v * 1e6 for key, v in case[label].items()}, 0)
                if label in case
                else "-"
                for label in labels
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        base_size = k["files"]["default"]["bytes"]
        base_seq = cases["default"]["sequential MB/s"]["median"]
        lines += [
            "",
            "| file | segment_bytes | MB | vs default | sequential decode of x, MB/s (CPU) | "
            "vs default | cold row: KiB read, p50 | cold row: KiB read, max |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, facts in k["files"].items():
            case = cases[name]
            seq = case["sequential MB/s"]
            lines.append(
                f"| {name} | {facts['segment_bytes']:,} | {facts['bytes'] / 1e6:.1f} | "
                f"{(facts['bytes'] / base_size - 1) * 100:+.1f} % | {fmt_range(seq, 0)} | "
                f"{(seq['median'] / base_seq - 1) * 100:+.1f} % | "
                f"{case['cold row bytes read p50']['median'] / 1024:,.0f} | "
                f"{case['cold row bytes read max']['median'] / 1024:,.0f} |"
            )
        lines += ["", *aims(kind, cases), ""]
    return "\n".join(lines) + "\n"


def aims(kind: str, cases: dict[str, Any]) -> list[str]:
    """The issue's aims for random rows, judged on this run's medians."""
    ra = cases["random_access=True"]
    row_us = ra["row x only, warm p50"]["median"] * 1e6
    limit, what = (50, "JPEG bytes") if kind == "jpeg" else (30, "a compressed array column")
    cold_kib = ra["cold row bytes read max"]["median"] / 1024
    out = [
        f"- Aim: p50 warm row of {what} <= {limit} us: {row_us:.0f} us with "
        f"`random_access=True` ({'PASS' if row_us <= limit else 'MISS'}); by default "
        f"{cases['default']['row x only, warm p50']['median'] * 1e6:.0f} us.",
        f"- Aim: a cold row reads at most 128 KiB: at most {cold_kib:.0f} KiB with "
        f"`random_access=True` ({'PASS' if cold_kib <= 128 else 'MISS'}); by default "
        f"{cases['default']['cold row bytes read max']['median'] / 1024:.0f} KiB.",
    ]
    npy = cases.get("npy memmap")
    if npy is not None:
        for label in ("gather 64 rows, warm p50", "DataLoader batch of 64, warm p50"):
            ratio = ra[label]["median"] / npy[label]["median"]
            out.append(
                f"- Aim: {label.split(',')[0]} <= 2x npy memmap: {ratio:.1f}x with "
                f"`random_access=True` ({'PASS' if ratio <= 2 else 'MISS'}); by default "
                f"{cases['default'][label]['median'] / npy[label]['median']:.1f}x."
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, under a minute")
    parser.add_argument("--keep", action="store_true", help="keep the written files")
    cfg = parser.parse_args()
    cfg.repeats = 3 if cfg.quick else 5
    cfg.rows = 200 if cfg.quick else 1000
    cfg.cold_rows = 10 if cfg.quick else 30
    cfg.gathers = 10 if cfg.quick else 40
    t0 = time.perf_counter()
    try:
        results = run(cfg)
    finally:
        if not cfg.keep:
            for written in [*WORK.glob("*.bale"), *WORK.glob("*.npy")]:
                written.unlink()
    stamp(
        results,
        WORK,
        ("numpy", "blosc2", "zstandard", "lz4", "xxhash"),
        ".venv/bin/python -m bench.random_access_bench" + (" --quick" if cfg.quick else ""),
    )
    results["total_seconds"] = time.perf_counter() - t0
    written = write_report("random_access_bench", results, report(results, cfg), quick=cfg.quick)
    print(f"wrote {written}")


if __name__ == "__main__":
    main()
