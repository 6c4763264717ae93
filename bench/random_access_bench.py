"""Random single rows and scattered gathers from bale files, with and without frame reads.

    .venv/bin/python -m bench.random_access_bench            # full run, a few minutes
    .venv/bin/python -m bench.random_access_bench --quick    # small data, under a minute

The benchmark suite's three kinds (bench/suite/data.py: JPEG bytes, 64x64x3 uint8 images,
sparse float32 activations, each with an int64 label) are written twice with bale's default
codecs and row groups: once by default (``segment_bytes`` of 1 GiB: every block one frame, as
bale 1.0 wrote) and once with ``random_access=True`` (64 KiB frames and a frame index: a row
decodes only the frames that hold it). In the same process, for each file: latency of ``ds[i]`` (all columns) and of
``ds.row(i, [x])`` at random indices, warm (file in the page cache, bale's block cache at its
default 64 MiB, smaller than every file here) and cold (page cache dropped before each row, a
fresh Dataset), and a gather of 64 random rows (``ds.take``). NumPy ``np.load(mmap_mode="r")``
of the same arrays is the reference for the arrays. Medians of repeated runs, round-robin.
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
from bale.io.pagecache import evict_files
from bench.machine import describe, machine_section, src_digest
from bench.results import OUT, write_report
from bench.stats import fmt_range, summary
from bench.suite import data

WORK = OUT / "random_access"
KINDS = data.KINDS


def write_files(kind: str, source: data.Source) -> dict[str, Path]:
    files = {}
    columns = {"x": source.x, "label": source.label}
    for name, random_access in (("default", False), ("random_access=True", True)):
        path = WORK / f"{kind}-{int(random_access)}.bale"
        bale.write(path, columns, random_access=random_access, overwrite=True)
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


def cold_rows(path: Path, indices: list[int]) -> list[float]:
    times = []
    for i in indices:
        evict_files([path])
        with bale.open(path) as ds:
            t0 = time.perf_counter()
            ds.row(i)
            times.append(time.perf_counter() - t0)
    return times


def gathers(path: Path, batches: list[np.ndarray]) -> list[float]:
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
                for label, times in (
                    ("row all columns, warm", warm_rows(path, indices, None)),
                    ("row x only, warm", warm_rows(path, indices, ["x"])),
                    ("gather 64 rows, warm", gathers(path, batches)),
                    ("row all columns, cold", cold_rows(path, cold)),
                ):
                    case.setdefault(label + " p50", []).append(percentile(times, 50))
                    case.setdefault(label + " p99", []).append(percentile(times, 99))
            if not source.spec.is_bytes:
                case = cases.setdefault("npy memmap", {})
                npy = WORK / f"{kind}.npy"
                case.setdefault("row x only, warm p50", []).append(
                    percentile(npy_rows(npy, indices), 50)
                )
                case.setdefault("gather 64 rows, warm p50", []).append(
                    percentile(npy_gathers(npy, batches), 50)
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
        "# bale random access: single rows and scattered gathers",
        "",
        f"Date: {results['date']}. Command: `{results['command']}` "
        f"(total {results['total_seconds']:.0f} s).",
        "",
        *machine_section(results["env"], results["src_digest"]),
        "",
        "## Method",
        "",
        (__doc__ or "").split("\n\n", 2)[2].strip(),
        "",
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
        "row all columns, cold p50",
    ]
    for kind, k in results["kinds"].items():
        lines += [
            f"## {kind}: {data.DESCRIPTIONS[kind]}",
            "",
            f"{k['rows']} rows, {k['raw_bytes'] / 1e6:.0f} MB of x. Files: "
            + "; ".join(
                f"{name}: {f['bytes'] / 1e6:.1f} MB, {f['row_groups']} row groups, x codec "
                f"`{f['codec']['id']}`, segment_bytes {f['segment_bytes']}"
                for name, f in k["files"].items()
            ),
            "",
            "| file | " + " | ".join(labels) + " |",
            "|---|" + "---:|" * len(labels),
        ]
        for name, case in k["cases"].items():
            cells = [
                fmt_range({key: v * 1e6 for key, v in case[label].items()}, 0)
                if label in case
                else "-"
                for label in labels
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        cases = k["cases"]
        ratios = []
        for label in ("row all columns, warm p50", "row all columns, cold p50"):
            before = cases["default"][label]["median"]
            after = cases["random_access=True"][label]["median"]
            ratios.append(f"{label.split(', ')[1]} {before / after:.1f}x")
        lines += [
            "",
            f"Random row, all columns: {', '.join(ratios)} faster with `random_access=True`.",
            "",
        ]
    return "\n".join(lines) + "\n"


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
    results["env"] = describe(WORK, packages=("numpy", "blosc2", "zstandard", "lz4", "xxhash"))
    results["src_digest"] = src_digest()
    results["date"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results["command"] = ".venv/bin/python -m bench.random_access_bench" + (
        " --quick" if cfg.quick else ""
    )
    results["total_seconds"] = time.perf_counter() - t0
    written = write_report("random_access_bench", results, report(results, cfg), quick=cfg.quick)
    print(f"wrote {written}")


if __name__ == "__main__":
    main()
