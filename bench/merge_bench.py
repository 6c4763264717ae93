"""Merge benchmark: how long merging a distributed write's parts into one file takes, against a
plain copy of the same bytes.

    .venv/bin/python -m bench.merge_bench            # 8 parts, about 1 GB, a few minutes
    .venv/bin/python -m bench.merge_bench --quick    # 4 parts, about 100 MB, under a minute

Builds (once, cached in bench/out/merge/) the parts of a ``bale.PartSet``: uint8 (N, 64, 64, 3)
images cut from the real photos in scikit-image (``bench/photo_data.py``) plus an int64 label,
with bale's default codecs and row groups, split evenly over the parts. Then, with the parts in
the page cache (read once before each run) and each output deleted before it is timed, runs
round-robin, ``--repeat`` times:

- ``copyfile``: ``shutil.copyfile`` of every part to a file of its own (Linux: ``sendfile``),
  the baseline; ``copyfile + fsync``: the same, each copy fsynced (merge makes its output
  durable before renaming it, so this is the like-for-like baseline);
- ``bale.merge``: the parts' row groups copied as stored into one file (``copy_file_range``
  between local files), the footer and frame index rebuilt, fsynced, renamed;
- ``bale.merge(verify=True)``: the same, reading the bytes through Python to check every
  block's checksum on the way;
- ``bale.concat``: the older path, each row group read, its blocks checked and written again
  through the Writer (``write_stored_group``).

The table shows median (min-max) wall seconds, the ratio of medians to each baseline, and the
CPU seconds other processes used meanwhile (the machine may be shared). The merged file is
checked (``bale verify``) once at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import bale
from bale.io.pagecache import read_through
from bale.ops.verify import verify
from bench.machine import ForeignLoad, describe, report_head, src_digest
from bench.photo_data import uint8_images
from bench.results import OUT, write_report
from bench.stats import Verdict, aims_section, fmt_range, print_aims, summary

WORK = OUT / "merge"
CHUNK = 4096
AIM = 1.2


def build(parts: int, rows: int) -> list[Path]:
    """The parts of a PartSet holding ``rows`` rows (cached)."""
    parts_set = bale.PartSet(WORK / f"images-{rows}-{parts}.bale")
    bounds = np.linspace(0, rows, parts + 1).astype(int)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for i in range(parts):

        def batches(a: int = int(bounds[i]), b: int = int(bounds[i + 1])) -> Any:
            for start in range(a, b, CHUNK):
                n = min(CHUNK, b - start)
                yield {"image": uint8_images(n, seed=start), "label": rng.integers(0, 9, n)}

        parts_set.write_part(i, batches())  # a complete part is kept from an earlier run
    print(f"parts ready in {time.perf_counter() - started:.0f} s", flush=True)
    return [Path(parts_set.part_path(i)) for i in range(parts)]


def copy_all(parts: list[Path], out: Path, *, sync: bool) -> None:
    for i, part in enumerate(parts):
        copy = out / f"{i}.bale"
        shutil.copyfile(part, copy)
        if sync:
            fd = os.open(copy, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 parts, about 100 MB")
    parser.add_argument("--parts", type=int, default=None)
    parser.add_argument("--rows", type=int, default=None, help="rows (12288 raw bytes each)")
    parser.add_argument("--repeat", type=int, default=None)
    args = parser.parse_args()
    parts_count = args.parts or (4 if args.quick else 8)
    rows = args.rows or (8192 if args.quick else 81920)
    repeat = args.repeat or (3 if args.quick else 5)
    t0 = time.perf_counter()
    WORK.mkdir(parents=True, exist_ok=True)
    parts = build(parts_count, rows)
    part_bytes = sum(p.stat().st_size for p in parts)
    print(f"{parts_count} parts, {rows} rows, {part_bytes / 1e9:.2f} GB", flush=True)
    scratch = WORK / "scratch"
    merged = scratch / "merged.bale"

    def fresh() -> None:
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        read_through(parts)

    cases: dict[str, Callable[[], Any]] = {
        "copyfile": lambda: copy_all(parts, scratch, sync=False),
        "copyfile + fsync": lambda: copy_all(parts, scratch, sync=True),
        "bale.merge": lambda: bale.merge(parts, merged),
        "bale.merge(verify=True)": lambda: bale.merge(parts, merged, verify=True),
        "bale.concat": lambda: bale.concat(parts, merged),
    }
    walls: dict[str, list[float]] = {name: [] for name in cases}
    foreign: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(repeat):
        for name, run in cases.items():
            fresh()
            load = ForeignLoad()
            run()
            measured = load.result()
            walls[name].append(measured["wall_s"])
            foreign[name].append(measured["foreign_cpu_s"])
            print(f"round {round_ + 1} {name}: {measured['wall_s']:.2f} s", flush=True)
    fresh()
    report = bale.merge(parts, merged)
    checked = verify(merged)
    if not checked.ok or report.rows != rows:
        sys.exit(f"the merged file is wrong: {checked.summary()}")
    shutil.rmtree(scratch, ignore_errors=True)

    rows_out = []
    base = statistics.median(walls["copyfile"])
    base_sync = statistics.median(walls["copyfile + fsync"])
    for name in cases:
        s = summary(walls[name])
        rows_out.append(
            {
                "case": name,
                "wall_s": s,
                "vs_copyfile": s["median"] / base,
                "vs_copyfile_fsync": s["median"] / base_sync,
                "gb_per_s": part_bytes / 1e9 / s["median"],
                "foreign_cpu_s": statistics.median(foreign[name]),
            }
        )
    ratio = statistics.median(walls["bale.merge"]) / base_sync
    verdicts = [
        Verdict(
            f"merge <= {AIM}x a plain copy of the same bytes (copyfile + fsync)",
            ratio <= AIM,
            f"{ratio:.2f}x ({statistics.median(walls['bale.merge']):.2f} s vs {base_sync:.2f} s;"
            f" {statistics.median(walls['bale.merge']) / base:.2f}x copyfile without fsync)",
        )
    ]
    print_aims(verdicts)
    results: dict[str, Any] = {
        "parts": parts_count,
        "rows": rows,
        "part_bytes": part_bytes,
        "merged_bytes": report.file_bytes,
        "row_groups": report.row_groups,
        "repeat": repeat,
        "cases": rows_out,
        "aims": [v.to_json() for v in verdicts],
        "env": describe(WORK, packages=("numpy", "xxhash")),
        "src_digest": src_digest(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": ".venv/bin/python -m bench.merge_bench" + (" --quick" if args.quick else ""),
        "total_seconds": time.perf_counter() - t0,
    }
    written = write_report("merge_bench", results, render(results), quick=args.quick)
    print(f"wrote {written}")


def render(results: dict[str, Any]) -> str:
    lines = report_head("Merging parts into one file", results, __doc__)
    lines += [
        "## Results",
        "",
        f"{results['parts']} parts, {results['rows']} rows, {results['row_groups']} row groups, "
        f"{results['part_bytes'] / 1e9:.2f} GB of parts -> {results['merged_bytes'] / 1e9:.2f} GB "
        f"merged; {results['repeat']} runs of each, round-robin.",
        "",
        "| case | wall s, median (min-max) | vs copyfile | vs copyfile + fsync | GB/s "
        "| other processes' CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["cases"]:
        lines.append(
            f"| {row['case']} | {fmt_range(row['wall_s'], 2)} | {row['vs_copyfile']:.2f}x | "
            f"{row['vs_copyfile_fsync']:.2f}x | {row['gb_per_s']:.2f} | "
            f"{row['foreign_cpu_s']:.1f} |"
        )
    lines += [
        "",
        *aims_section(
            [Verdict(a["aim"], a["verdict"] == "PASS", a["detail"]) for a in results["aims"]]
        ),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
