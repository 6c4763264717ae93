"""Map-style PyTorch reading: ``DataLoader(TorchDataset, shuffle=True)`` against the same
DataLoader with ``sampler=ChunkSampler(...)``, and ``TorchIterableDataset`` as the reference.

A uniformly shuffled batch of 64 rows touches up to 64 row groups, and each worker decodes
each of them (its block cache cannot hold the file); ``ChunkSampler`` serves the Loader's
chunk-aware order, so a batch reads the row groups of one window, which stay in the worker's
block cache. Measured: samples per second over one epoch (capped in time for the slow case),
cold (the file evicted first), with 2 DataLoader workers, 3 repeats, medians. Results: ``bench/results/sampler_bench.*``.

    .venv/bin/python -m bench.sampler_bench [--quick]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import describe, evict
from bench.photo_data import uint8_images
from bench.results import OUT, write_report
from bench.stats import fmt_range, summary

BATCH = 64
WORKERS = 2
MAX_SECONDS = 30.0  # a shuffle=True epoch may take minutes: its rate is measured over this long


def make_file(rows: int) -> Path:
    import bale

    path = OUT / "sampler" / f"images_{rows}.bale"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        images = uint8_images(rows, seed=0)
        bale.write(path, {"image": images, "label": np.arange(rows)}, overwrite=True)
    return path


def run(path: Path, kind: str) -> dict[str, float]:
    import torch
    from torch.utils.data import DataLoader

    from bale.adapters.torch import ChunkSampler, TorchDataset, TorchIterableDataset

    evict([path])
    ds = TorchDataset(path)
    if kind == "shuffle=True":
        loader: Any = DataLoader(
            ds,
            batch_size=BATCH,
            shuffle=True,
            num_workers=WORKERS,
            generator=torch.Generator().manual_seed(0),
        )
    elif kind == "ChunkSampler":
        loader = DataLoader(
            ds, batch_size=BATCH, sampler=ChunkSampler(ds, seed=0), num_workers=WORKERS
        )
    else:
        loader = DataLoader(
            TorchIterableDataset(path, BATCH, seed=0), batch_size=None, num_workers=WORKERS
        )
    rows = 0
    start = time.perf_counter()
    for batch in loader:
        rows += len(batch["label"])
        if time.perf_counter() - start > MAX_SECONDS:
            break
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": seconds, "samples_per_s": rows / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small file, one repeat")
    args = parser.parse_args()
    rows = 6_000 if args.quick else 30_000
    repeats = 1 if args.quick else 3
    path = make_file(rows)
    import bale

    with bale.open(path) as ds:
        groups, file_bytes = ds.num_row_groups, path.stat().st_size
    print(f"{rows} rows of 64x64x3 uint8, {groups} row groups, {file_bytes / 1e6:.0f} MB")
    kinds = ("shuffle=True", "ChunkSampler", "TorchIterableDataset")
    results: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    for _ in range(repeats):
        for kind in kinds:  # interleaved, so load changes hit every kind alike
            r = run(path, kind)
            results[kind].append(r)
            print(f"{kind:22s} {r['samples_per_s']:9.0f} samples/s ({r['rows']} rows)")
    rates = {k: summary([r["samples_per_s"] for r in v]) for k, v in results.items()}
    data = {
        "environment": describe(path.parent, ["torch"]),
        "rows": rows,
        "row_groups": groups,
        "file_bytes": file_bytes,
        "batch": BATCH,
        "workers": WORKERS,
        "max_seconds": MAX_SECONDS,
        "runs": results,
        "samples_per_s": rates,
    }
    base = rates["shuffle=True"]["median"]
    env = data["environment"]
    lines = [
        "# Map-style PyTorch: ChunkSampler against shuffle=True",
        "",
        f"Date: {env['date']}. Command: `.venv/bin/python -m bench.sampler_bench`. bale git "
        f"{env['git_commit']}; {env['cpu']}, {env['cores']} cores; torch "
        f"{env['versions'].get('torch')}.",
        "",
        f"A file of {rows} 64x64x3 uint8 images (bale's default codec, {groups} row groups, "
        f"{file_bytes / 1e6:.0f} MB), evicted from the page cache before each run; "
        f"`DataLoader(TorchDataset(path), batch_size={BATCH}, num_workers={WORKERS})` with "
        "`shuffle=True` or `sampler=ChunkSampler(ds, seed=0)`, and "
        f"`DataLoader(TorchIterableDataset(path, {BATCH}), batch_size=None, "
        f"num_workers={WORKERS})` for reference. One epoch each (at most {MAX_SECONDS:.0f} s: "
        f"the rate is rows over that time), {repeats} repeats interleaved, median (min-max).",
        "",
        "| reading | samples/s | vs shuffle=True |",
        "|---|---|---|",
    ]
    for kind in kinds:
        lines.append(f"| {kind} | {fmt_range(rates[kind])} | {rates[kind]['median'] / base:.1f}x |")
    lines.append("")
    write_report("sampler_bench", data, "\n".join(lines) + "\n", quick=args.quick)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
