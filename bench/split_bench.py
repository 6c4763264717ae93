"""Split benchmark: how long `bale.split` takes by copying row groups vs by re-encoding rows.

Builds (once, cached in bench/out/split/) a file of uint8 (N, 64, 64, 3) images cut from the real
photos in scikit-image (``bench/photo_data.py``) plus an int64 label, about 1 GB raw, marked as
shuffled when packed. Then times, with a warm page cache and fsync included (the Writer syncs
every output before renaming it):

- ``copy``: ``split(path, shuffle=False)``: contiguous ranges, whole row groups copied as stored;
- ``re-encode``: ``split(path, shuffle=True)``: rows assigned by a seeded permutation, every row
  decoded and re-compressed;
- ``stratified``: ``split(path, stratify="label")``: like re-encode, per class;
- ``concat``: joining the three copied outputs again (all groups copied).

Each is run ``--repeat`` times; the table shows the median (min-max) wall seconds, and the CPU
seconds other processes used meanwhile (the machine may be shared).

    .venv/bin/python -m bench.split_bench              # ~1 GB raw, a few minutes
    .venv/bin/python -m bench.split_bench --rows 8192  # ~100 MB, quick
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import bale
from bench.machine import ForeignLoad
from bench.photo_data import uint8_images
from bench.results import OUT as BENCH_OUT
from bench.stats import summary

OUT = BENCH_OUT / "split"
CHUNK = 4096


def build(rows: int) -> Path:
    path = OUT / f"images-{rows}.bale"
    if path.exists():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    with bale.Writer(path, metadata={"bale.pack": {"shuffled": True}}) as writer:
        for i, start in enumerate(range(0, rows, CHUNK)):
            n = min(CHUNK, rows - start)
            writer.write({"image": uint8_images(n, seed=i), "label": rng.integers(0, 9, n)})
    print(f"built {path} in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def timed(run: Callable[[], Any], repeat: int) -> dict[str, Any]:
    walls, foreign = [], []
    result = None
    for _ in range(repeat):
        load = ForeignLoad()
        result = run()
        measured = load.result()
        walls.append(measured["wall_s"])
        foreign.append(measured["foreign_cpu_s"])
    return {
        **summary(walls),
        "foreign_cpu_s": statistics.median(foreign),
        "result": result,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=81920, help="rows (12288 raw bytes each)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    source = build(args.rows)
    with bale.open(source) as ds:
        raw = int(ds.index.blocks["raw_size"].sum())
        groups = ds.num_row_groups
    print(
        f"source: {args.rows} rows, {groups} row groups, {raw / 1e9:.2f} GB raw, "
        f"{source.stat().st_size / 1e9:.2f} GB stored; {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}",
        flush=True,
    )
    work = OUT / "work"
    cases: dict[str, Callable[[], Any]] = {
        "copy (shuffle=False)": lambda: bale.split(
            source, out_dir=work / "copy", shuffle=False, overwrite=True
        ),
        "re-encode (shuffle=True)": lambda: bale.split(
            source, out_dir=work / "random", shuffle=True, overwrite=True
        ),
        "stratified (stratify='label')": lambda: bale.split(
            source, out_dir=work / "strat", stratify="label", overwrite=True
        ),
        "concat of the copied splits": lambda: bale.concat(
            [work / "copy" / f"{n}.bale" for n in ("train", "valid", "test")],
            work / "joined.bale",
            overwrite=True,
        ),
    }
    print(f"| operation | wall s, median (min-max) of {args.repeat} | other processes' CPU s |")
    print("|---|---|---|")
    summaries = []
    for name, run in cases.items():
        t = timed(run, args.repeat)
        print(
            f"| {name} | {t['median']:.1f} ({t['min']:.1f}-{t['max']:.1f}) | "
            f"{t['foreign_cpu_s']:.1f} |",
            flush=True,
        )
        report = t["result"]
        if isinstance(report, (bale.SplitReport, bale.ConcatReport)):
            summaries.append(report.summary())
    print()
    print("\n".join(summaries))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
