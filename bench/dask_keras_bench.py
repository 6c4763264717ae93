"""Dask + Keras ``fit(shuffle=True)``: one shuffled epoch of batches gathered from a dask array
by fancy indexing, against ``bale.Loader`` and ``KerasSequence`` over a bale file of the same rows.

    flock /tmp/bench.lock .venv/bin/python -m bench.dask_keras_bench           # 8,000 rows, ~2 min
    flock /tmp/bench.lock .venv/bin/python -m bench.dask_keras_bench --quick   # 2,000 rows

Rows are 64x64x3 uint8 images cut from real photos (``bench.photo_data``, 12,288 bytes a row)
with an int64 label, written once under bench/out/dask_keras/ as a zarr array (zarr's default
codec, chunks of 1,000 rows: what a Dask user typically holds), a ``.npy`` file, and a ``.bale``
file with bale's defaults. Every reader produces the batches a Keras ``PyDataset`` would hand to
``fit``: ``(images, labels)`` of 64 rows, in an order shuffled each epoch.

- ``dask + zarr`` (the baseline, 1.0x): ``dask.compute(x[idx], y[idx])`` for consecutive slices
  ``idx`` of a random permutation, ``x``/``y`` from ``da.from_zarr`` (dask's threaded scheduler):
  what a ``PyDataset.__getitem__`` over dask arrays does, and what ``fit(x=..., shuffle=True)``
  asks of the data. Each batch touches almost every chunk, so each chunk is decoded once per
  batch.
- ``dask + npy``: the same over ``da.from_array(np.load(path, mmap_mode="r"))`` with the same
  row chunks (no decoding: the cost of dask's graph per batch).
- ``dask + from_bale``: the same over ``bale.dask.from_bale`` of the bale file (its gathers read
  only the rows a batch needs, but still decode each touched block whole, 1 MiB, per batch).
- ``bale.Loader``: ``Loader(path, 64, shuffle="chunks", seed=epoch)``, iterated (threads read
  and decode ahead).
- ``KerasSequence``: ``seq[i]`` for every batch of ``KerasSequence(path, 64, x="image",
  y="label", shuffle="chunks")`` after ``set_epoch`` (what ``fit(seq, shuffle=False)`` calls,
  one batch at a time, without Keras's workers). A fresh sequence each epoch, as a fresh
  Loader: a sequence kept across epochs holds a file smaller than its memory budget (1.5 GiB)
  decoded in its block cache after the first epoch, and its later epochs are faster still.
- ``NumPy in memory`` (reference): ``x[idx], y[idx]`` on arrays held in RAM.

The files are in the page cache (read through once before the runs; nothing here measures a
cold disk). Each reader is warmed up by 3 batches, then timed over whole epochs (at most
``--max-seconds`` each: the rate is rows over that time), ``--repeats`` epochs taken round-robin
over the readers; samples/s, median (min-max); the ratio is to dask + zarr in the same run. The
first batch of each reader is checked against the NumPy arrays. The CPU seconds other processes
used during the runs are reported (the machine may be shared). Results:
``bench/results/dask_keras_bench.*``.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import ForeignLoad, exit_on_sigterm, read_through, report_head, stamp
from bench.photo_data import labelled_uint8_images
from bench.results import OUT, write_report
from bench.stats import fmt_range, summary

WORK = OUT / "dask_keras"
BATCH = 64
CHUNK_ROWS = 1000  # rows per zarr chunk and per dask chunk
WARMUP_BATCHES = 3
READERS = (
    "dask + zarr",
    "dask + npy",
    "dask + from_bale",
    "bale.Loader",
    "KerasSequence",
    "NumPy in memory",
)

Batch = tuple[np.ndarray, np.ndarray]
Epoch = Callable[[int], Iterator[Batch]]  # epoch number -> that epoch's batches


def write_files(rows: int) -> tuple[dict[str, Path], np.ndarray, np.ndarray]:
    import zarr

    import bale

    WORK.mkdir(parents=True, exist_ok=True)
    images, labels = labelled_uint8_images(rows, seed=0)
    files = {
        "zarr_x": WORK / f"images_{rows}.zarr",
        "zarr_y": WORK / f"labels_{rows}.zarr",
        "npy_x": WORK / f"images_{rows}.npy",
        "npy_y": WORK / f"labels_{rows}.npy",
        "bale": WORK / f"images_{rows}.bale",
    }
    for key, values in (("zarr_x", images), ("zarr_y", labels)):
        store = zarr.open_array(
            files[key],
            mode="w",
            shape=values.shape,
            chunks=(CHUNK_ROWS, *values.shape[1:]),
            dtype=values.dtype,
        )
        store[:] = values
    np.save(files["npy_x"], images)
    np.save(files["npy_y"], labels)
    bale.write(files["bale"], {"image": images, "label": labels}, overwrite=True)
    return files, images, labels


def readers(files: dict[str, Path], images: np.ndarray, labels: np.ndarray) -> dict[str, Epoch]:
    import dask
    import dask.array as da

    import bale
    from bale.adapters.keras import keras_sequence_class
    from bale.dask import from_bale

    rows = len(labels)
    chunks = (CHUNK_ROWS, *images.shape[1:])

    def permutation(epoch: int) -> np.ndarray:
        return np.random.default_rng(epoch).permutation(rows)

    def dask_epoch(x: Any, y: Any) -> Epoch:
        def epoch_batches(epoch: int) -> Iterator[Batch]:
            order = permutation(epoch)
            for lo in range(0, rows, BATCH):
                idx = order[lo : lo + BATCH]
                yield dask.compute(x[idx], y[idx])

        return epoch_batches

    zarr_x = da.from_zarr(str(files["zarr_x"]))  # type: ignore[no-untyped-call]
    zarr_y = da.from_zarr(str(files["zarr_y"]))  # type: ignore[no-untyped-call]
    npy_x = da.from_array(np.load(files["npy_x"], mmap_mode="r"), chunks=chunks)
    npy_y = da.from_array(np.load(files["npy_y"], mmap_mode="r"), chunks=(CHUNK_ROWS,))

    def loader_epoch(epoch: int) -> Iterator[Batch]:
        with bale.Loader(files["bale"], BATCH, shuffle="chunks", seed=epoch) as loader:
            for batch in loader:
                yield batch["image"], batch["label"]

    keras_sequence = keras_sequence_class()

    def sequence_epoch(epoch: int) -> Iterator[Batch]:
        # A fresh sequence, as a fresh Loader: its block cache (up to 1.5 GiB) would otherwise
        # hold the whole decoded file after the first epoch, and later epochs read from memory.
        sequence = keras_sequence(files["bale"], BATCH, x="image", y="label")
        sequence.set_epoch(epoch)
        try:
            for i in range(len(sequence)):
                x, y = sequence[i]
                yield x, y
        finally:
            sequence.dataset.close()

    def numpy_epoch(epoch: int) -> Iterator[Batch]:
        order = permutation(epoch)
        for lo in range(0, rows, BATCH):
            idx = order[lo : lo + BATCH]
            yield images[idx], labels[idx]

    return {
        "dask + zarr": dask_epoch(zarr_x, zarr_y),
        "dask + npy": dask_epoch(npy_x, npy_y),
        "dask + from_bale": dask_epoch(
            from_bale(files["bale"], "image"), from_bale(files["bale"], "label")
        ),
        "bale.Loader": loader_epoch,
        "KerasSequence": sequence_epoch,
        "NumPy in memory": numpy_epoch,
    }


def check(name: str, epoch: Epoch, images: np.ndarray, labels: np.ndarray) -> None:
    """The first batch: 64 rows, each image a row of the data (found by content) with its
    own label."""
    x, y = next(iter(epoch(0)))
    if len(x) != len(y) or len(x) != min(BATCH, len(labels)):
        raise AssertionError(f"{name}: a batch of {len(x)} images and {len(y)} labels")
    flat = images.reshape(len(images), -1)
    for image, label in zip(x[:4], y[:4], strict=True):
        rows = np.flatnonzero((flat == image.reshape(-1)).all(axis=1))
        if not len(rows) or labels[rows[0]] != label:
            raise AssertionError(f"{name}: a batch row that is not a row of the data")


def timed_epoch(epoch: Epoch, number: int, max_seconds: float) -> dict[str, float]:
    samples = 0
    start = time.perf_counter()
    for x, _ in epoch(number):
        samples += len(x)
        if time.perf_counter() - start > max_seconds:
            break
    seconds = time.perf_counter() - start
    return {"samples": samples, "seconds": seconds, "samples_per_s": samples / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 rows, 2 repeats")
    parser.add_argument("--rows", type=int, help="rows (default 8,000; 2,000 with --quick)")
    parser.add_argument("--repeats", type=int, help="epochs per reader (default 3; 2 quick)")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="per timed epoch")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    os.environ.setdefault("KERAS_BACKEND", "torch")
    rows = args.rows or (2_000 if args.quick else 8_000)
    repeats = args.repeats or (2 if args.quick else 3)
    started = time.perf_counter()
    files, images, labels = write_files(rows)
    paths = [p for p in files.values() if p.is_file()]
    paths += [p for d in files.values() if d.is_dir() for p in d.rglob("*") if p.is_file()]
    read_through(paths)
    epochs = readers(files, images, labels)
    for name, epoch in epochs.items():
        check(name, epoch, images, labels)
        for _, _batch in zip(range(WARMUP_BATCHES), epoch(0), strict=False):
            pass
    print(f"{rows} rows of 64x64x3 uint8 + int64 label, batches of {BATCH}; samples/s")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in READERS}
    load = ForeignLoad()
    for number in range(1, repeats + 1):
        for name in READERS:  # round-robin, so load changes hit every reader alike
            run = timed_epoch(epochs[name], number, args.max_seconds)
            runs[name].append(run)
            print(f"  epoch {number} {name:<16} {run['samples_per_s']:>10,.0f}")
    foreign = load.result()
    rates = {name: summary([r["samples_per_s"] for r in v]) for name, v in runs.items()}
    base = rates["dask + zarr"]["median"]
    results: dict[str, Any] = {
        "rows": rows,
        "batch": BATCH,
        "chunk_rows": CHUNK_ROWS,
        "repeats": repeats,
        "max_seconds": args.max_seconds,
        "file_bytes": {k: _size(p) for k, p in files.items()},
        "runs": runs,
        "samples_per_s": rates,
        "vs_dask_zarr": {name: rates[name]["median"] / base for name in READERS},
        "foreign_load": foreign,
    }
    command = "flock /tmp/bench.lock .venv/bin/python -m bench.dask_keras_bench" + (
        " --quick" if args.quick else ""
    )
    stamp(results, WORK, ("numpy", "dask", "zarr", "keras", "torch"), command)
    results["total_seconds"] = time.perf_counter() - started
    lines = [
        *report_head(
            "Dask + Keras fit(shuffle=True): dask fancy indexing against bale", results, __doc__
        ),
        "## Results",
        "",
        f"{rows:,} rows ({_size(files['npy_x']) / 1e6:,.0f} MB of images; zarr "
        f"{_size(files['zarr_x']) / 1e6:,.0f} MB, bale {_size(files['bale']) / 1e6:,.0f} MB on "
        f"disk), batches of {BATCH}, {repeats} shuffled epochs per reader; other processes used "
        f"{foreign['foreign_cores']:.2f} cores on average meanwhile.",
        "",
        "| reader | samples/s, median (min-max) | one epoch | vs dask + zarr |",
        "|---|---|---|---|",
    ]
    for name in READERS:
        rate = rates[name]
        lines.append(
            f"| {name} | {fmt_range(rate)} | {rows / rate['median']:,.2f} s | "
            f"{rate['median'] / base:,.1f}x |"
        )
    lines.append("")
    report = write_report("dask_keras_bench", results, "\n".join(lines) + "\n", quick=args.quick)
    print("\n".join(lines[-len(READERS) - 3 :]))
    print(f"report: {report}")


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


if __name__ == "__main__":
    main()
