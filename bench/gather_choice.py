"""How to gather a shuffled batch from an uncompressed bale column: the candidates measured
against np.take on a NumPy memmap (the choice is recorded in docs/DECISIONS.md).

    .venv/bin/python -m bench.gather_choice [--rows 60000] [--repeats 5]

Warm page cache, batches of 256 random rows, one thread; prints GB/s (median, min-max) and the
ratio to the memmap baseline measured in the same process.
"""

from __future__ import annotations

import argparse
import mmap
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import as_strided

import bale
from bench.results import OUT

ROW_SHAPE = (64, 64, 3)
BATCH = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        run(Path(tmp), args.rows, args.repeats)


def run(tmp: Path, n: int, repeats: int) -> None:
    x = np.random.default_rng(0).integers(0, 255, (n, *ROW_SHAPE), dtype=np.uint8)
    bale.write(tmp / "raw.bale", {"data": x}, codecs={"data": "none"})
    np.save(tmp / "raw.npy", x)
    del x
    ds = bale.open(tmp / "raw.bale")
    with open(tmp / "raw.bale", "rb") as f:
        mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    data = np.frombuffer(mapping, np.uint8)
    row_bytes = int(np.prod(ROW_SHAPE))
    blocks = ds.index.blocks[:, 0]
    sizes = np.asarray(ds.row_group_sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    group_of = np.searchsorted(starts, np.arange(n), side="right") - 1
    local = np.arange(n) - starts[group_of]
    byte_offset = blocks["offset"].astype(np.int64)[group_of] + local * row_bytes
    views = [
        data[int(o) : int(o) + int(s) * row_bytes].reshape(int(s), *ROW_SHAPE)
        for o, s in zip(blocks["offset"], sizes, strict=True)
    ]
    memmap = np.load(tmp / "raw.npy", mmap_mode="r")
    unit = 64
    strided = as_strided(
        data, shape=((len(data) - row_bytes) // unit + 1, row_bytes), strides=(unit, 1)
    )
    units64 = np.frombuffer(mapping, dtype=np.dtype((np.void, unit)), count=len(mapping) // unit)
    unit_range = np.arange(row_bytes // unit)

    def baseline(rows: np.ndarray) -> np.ndarray:
        return np.take(memmap, rows, axis=0)

    def strided_view(rows: np.ndarray) -> np.ndarray:
        return strided[byte_offset[rows] // unit]

    def per_row_slices(rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), row_bytes), np.uint8)
        for i, offset in enumerate(byte_offset[rows].tolist()):
            out[i] = data[offset : offset + row_bytes]
        return out

    def void64_take(rows: np.ndarray) -> np.ndarray:
        index = (byte_offset[rows] // unit)[:, None] + unit_range
        return np.take(units64, index).view(np.uint8)

    def per_group_take(rows: np.ndarray) -> np.ndarray:
        groups = group_of[rows]
        order = np.argsort(groups, kind="stable")
        sorted_groups = groups[order]
        bounds = np.flatnonzero(np.diff(sorted_groups)) + 1
        tmp_out = np.empty((len(rows), *ROW_SHAPE), np.uint8)
        locals_ = local[rows][order]
        for a, b in zip([0, *bounds.tolist()], [*bounds.tolist(), len(rows)], strict=True):
            np.take(views[sorted_groups[a]], locals_[a:b], axis=0, out=tmp_out[a:b])
        out = np.empty_like(tmp_out)
        out[order] = tmp_out
        return out

    candidates: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "np.take on a memmap (baseline)": baseline,
        "fancy index on a strided view of the mapped file": strided_view,
        "Python loop, one slice per row": per_row_slices,
        "np.take of 64-byte units": void64_take,
        "per row group np.take, then reorder": per_group_take,
    }
    check = np.random.default_rng(1).permutation(n)[:BATCH]
    for fn in candidates.values():  # all equal, and every page touched once
        assert fn(check).tobytes() == baseline(check).tobytes()
        fn(np.arange(n))
    rates: dict[str, list[float]] = {name: [] for name in candidates}
    for repeat in range(repeats):
        order = np.random.default_rng(repeat).permutation(n)
        for name, fn in candidates.items():
            t0 = time.perf_counter()
            moved = 0
            for a in range(0, n - BATCH + 1, BATCH):
                moved += fn(order[a : a + BATCH]).nbytes
            rates[name].append(moved / (time.perf_counter() - t0) / 1e9)
    base = statistics.median(rates["np.take on a memmap (baseline)"])
    print(f"{n} rows of {ROW_SHAPE} uint8, batches of {BATCH}, {repeats} repeats")
    for name, values in rates.items():
        median = statistics.median(values)
        print(
            f"{name:52s} {median:6.2f} GB/s ({min(values):.2f}-{max(values):.2f})"
            f"  {median / base:.2f}x baseline"
        )
    ds.close()


if __name__ == "__main__":
    main()
