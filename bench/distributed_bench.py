"""Distributed benchmark: what ranks and DataLoader workers cost over ``TorchIterableDataset``.

Two questions, each answered in one process tree so that ratios are taken under the same load:

1. Bytes read and row groups decoded per epoch, as multiples of the file, for a chunk-shuffled
   epoch of ``DataLoader(TorchIterableDataset(path, 256, shuffle="chunks", seed=0),
   batch_size=None, num_workers=K)``: one rank with K = 0, 1, 2, 4, and 2 and 4 ranks (separate
   processes, ``rank=``/``world_size=`` passed explicitly) with K = 0 and 2. The file holds
   64x64x3 uint8 images from ``bench/photo_data.py`` in bale's default (compressed) codec. Bytes
   are ``rchar`` of /proc/self/io of every process: the kernel adds a process's counters to its
   parent's when the parent reaps it, so the benchmark's own counter, read before and after a
   run whose ranks and workers have all exited, counts every process involved. Row groups
   decoded are counted in each process by a wrapper around ``bale.Dataset.read_row_group``,
   installed by this script at run time (bale's files are not changed; chunk shuffling reads and
   decodes a row group through that call each time it needs it). Each run starts with the file evicted from the
   page cache; ``rchar`` counts page-cache hits too, so eviction matters only for the times.
   Aim: 1.0x the file (within 5%) in every case.
2. JPEG decode + crop (``DecodeImages("jpeg", size=(224, 224), random_resized_crop=(0.08, 1),
   hflip=0.5)`` as ``batch_transform``): epoch time with ``num_workers=2`` against
   ``num_workers=0``, and the time to the first batch of each epoch with
   ``persistent_workers=False`` and ``True`` (and ``num_workers=2`` with 4 bale threads per
   worker, against the adapter's default of cores / workers). Aims: workers not slower; first
   batch < 0.2 s.

Every figure is the median (min-max) of repeats, run round-robin. No figure is asserted: each
aim is judged PASS or MISS as measured. Results go to ``bench/results/distributed_bench.json``
and ``.md``.

    .venv/bin/python -m bench.distributed_bench           # full run, about 6 minutes
    .venv/bin/python -m bench.distributed_bench --quick   # small data, under a minute

Units: 1 MB = 10^6 bytes. Linux only (/proc, fork).
"""

from __future__ import annotations

import argparse
import functools
import gc
import inspect
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, get_worker_info

import bale
from bale.adapters.torch import TorchIterableDataset
from bale.images import DecodeImages
from bale.loader.order import epoch_order
from bench import photo_data
from bench.machine import (
    ForeignLoad,
    describe,
    evict,
    exit_on_sigterm,
    machine_section,
    own_cpu_seconds,
    proc_io,
    read_through,
    resident_bytes,
    src_digest,
)
from bench.results import OUT, write_report
from bench.stats import Verdict, aims_section, fmt_range, print_aims, summary

# Everything written there (git-ignored) is deleted at the end.
WORK = OUT / "distributed_bench"
MB = 1e6
ARRAY_BATCH = 256
JPEG_BATCH = 64
WORKER_COUNTS = (0, 1, 2, 4)  # one rank
RANK_LAYOUTS = ((2, 0), (2, 2), (4, 0), (4, 2))  # (world size, workers per rank)
TARGET_WINDOWS = 24  # the small-window table: window_groups = row groups // this (>= 20 windows)
PROBE_WINDOW_GROUPS = 8  # a small window, for the first-batch probe
# bale.Loader's default num_threads (4 when this was written).
DEFAULT_THREADS: int = inspect.signature(bale.Loader).parameters["num_threads"].default
# Aims (from the issue).
AIM_READ_TOLERANCE = 0.05  # bytes read and row groups decoded: 1.0x the file, within 5%
AIM_FIRST_BATCH_S = 0.2
# label: (num_workers, persistent_workers, num_threads of each process's bale.Loader)
JPEG_CONFIGS: dict[str, tuple[int, bool, int | None]] = {
    "num_workers=0": (0, False, None),
    "num_workers=2": (2, False, None),
    "num_workers=2, persistent_workers=True": (2, True, None),
    "num_workers=2, num_threads=4": (2, False, 4),
}
BASELINE = "num_workers=0"


@dataclass(frozen=True)
class Config:
    quick: bool
    base_images: int  # distinct 64x64 images generated
    copies: int  # the file holds them this many times over (each row group compressed alone)
    repeats: int  # of each bytes-read case
    n_jpeg: int
    jpeg_repeats: int
    epochs: int  # per DataLoader in the JPEG part

    @classmethod
    def make(cls, quick: bool) -> Config:
        if quick:
            return cls(True, 3000, 2, 1, 400, 1, 2)
        # 40 000 images: 492 MB decoded, ~345 MB on disk; 3000 JPEGs, ~140 MB.
        return cls(False, 8000, 5, 3, 3000, 3, 3)


# -- what each process records ---------------------------------------------------------------


class _DecodeCounter:
    """Calls of ``bale.Dataset.read_row_group`` in this process (and in processes forked after
    :meth:`install`): a row group read and decoded. Thread-safe; installed only by ``main``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.installed = False

    def install(self) -> None:
        if self.installed:
            return
        from bale._core.dataset import Dataset

        original = Dataset.read_row_group

        @functools.wraps(original)
        def counted(ds: Any, *args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.count += 1
            return original(ds, *args, **kwargs)

        Dataset.read_row_group = counted  # type: ignore[method-assign, assignment]
        self.installed = True

    def value(self) -> int:
        with self._lock:
            return self.count


DECODES = _DecodeCounter()


class MeasuredDataset(TorchIterableDataset):
    """``TorchIterableDataset`` whose iteration records, in the process that makes the batches
    (a DataLoader worker, or the main process with num_workers=0), what it read and decoded and
    when its first batch was ready: one JSON file per iteration in ``report_dir``."""

    report_dir: str | None = None

    def _tensor_batches(self) -> Iterator[dict[str, Any]]:
        # The adapter's private generator of a process's batches (wrapped here rather than
        # __iter__, which hands batches to the DataLoader through shared memory only when the
        # DataLoader is its direct caller).
        enter = time.time()
        rchar0, decodes0 = proc_io()["rchar"], DECODES.value()
        info = get_worker_info()
        epoch = self.epoch
        first: float | None = None
        rows = batches = 0
        for batch in super()._tensor_batches():
            if first is None:
                first = time.time()
            rows += len(next(iter(batch.values())))
            batches += 1
            yield batch
        # Runs when the DataLoader asks for the item after the last: the iteration is over.
        record = {
            "pid": os.getpid(),
            "worker": None if info is None else info.id,
            "workers": 0 if info is None else info.num_workers,
            "rank": self.loader_kwargs["rank"],
            "epoch": epoch,
            "rows": rows,
            "batches": batches,
            # A worker's counters start at zero when it is forked: its total is all it read.
            "rchar_process": proc_io()["rchar"],
            "rchar_iteration": proc_io()["rchar"] - rchar0,
            "decodes": DECODES.value() - decodes0,
            "enter": enter,
            "first_batch": first,
            "end": time.time(),
            # The threads of this process's bale.Loader (a private attribute of the adapter:
            # None if it moves).
            "threads": getattr(getattr(self, "_loader", None), "num_threads", None),
        }
        if self.report_dir is not None:
            name = f"{os.getpid()}-{epoch}-{uuid.uuid4().hex[:8]}.json"
            (Path(self.report_dir) / name).write_text(json.dumps(record))


def read_records(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]


# -- part 1: bytes read and row groups decoded -------------------------------------------------


def write_uint8_file(cfg: Config) -> Path:
    """64x64x3 uint8 images in bale's default codec, written in pieces (the same real-photo images
    repeated: each row group compresses on its own, so repetition does not make it smaller)."""
    images = photo_data.uint8_images(cfg.base_images, seed=1)
    path = WORK / "uint8_images.bale"
    with bale.Writer(path, overwrite=True) as writer:
        for _ in range(cfg.copies):
            writer.write({"image": images})
    return path


def load_lazy_imports(path: Path) -> None:
    """One epoch through the adapter over a small file of the same kind (a few row groups),
    with and without a worker, so the modules bale and torch import on first use are loaded in
    this process before anything is measured: the forked ranks and workers inherit them and
    their reading of module files does not count as the epochs'."""
    small = WORK / "warmup.bale"
    with bale.open(path) as source:
        bale.write(small, source.read(slice(0, 3 * source.row_group_sizes[0])), overwrite=True)
    try:
        for workers in (0, 1):
            ds = MeasuredDataset(small, ARRAY_BATCH, shuffle="chunks", seed=0)
            for _ in DataLoader(ds, batch_size=None, num_workers=workers):
                pass
            ds.close()
    finally:
        small.unlink()


def rank_process(
    path: str, rank: int, world: int, workers: int, window: int, report_dir: str
) -> None:
    """One simulated rank (a forked process): one epoch through the DataLoader, then a JSON
    record of its own totals. Its workers are joined at the end of the epoch, so its
    /proc/self/io includes theirs."""
    t0 = time.perf_counter()
    ds = MeasuredDataset(
        path,
        ARRAY_BATCH,
        shuffle="chunks",
        seed=0,
        rank=rank,
        world_size=world,
        window_groups=window,
    )
    ds.report_dir = report_dir
    loader = DataLoader(ds, batch_size=None, num_workers=workers)
    start = time.perf_counter()
    first: float | None = None
    rows = 0
    for batch in loader:
        if first is None:
            first = time.perf_counter() - start
        rows += len(batch["image"])
    seconds = time.perf_counter() - start
    del loader
    ds.close()
    record = {
        "rank": rank,
        "rows": rows,
        "epoch_s": seconds,
        "with_setup_s": time.perf_counter() - t0,
        "first_batch_s": first,
        "rchar_process": proc_io()["rchar"],
    }
    (Path(report_dir) / f"rank-{rank}.json").write_text(json.dumps(record))


def predicted_reads(
    group_sizes: np.ndarray, stored: np.ndarray, world: int, workers: int, window: int
) -> dict[str, int]:
    """Row groups read per epoch according to the order alone (``bale.loader.order``): each
    consumer reads, window by window, every row group its window pieces touch. ``windows``
    counts them (``bytes``: their stored bytes); ``shares`` counts each consumer's row groups
    once (what reading would cost if window boundaries never cut a row group): the difference
    is the cost of windows that cut row groups."""
    per_window = per_share = nbytes = 0
    for rank in range(world):
        for worker in range(max(1, workers)):
            order = epoch_order(
                group_sizes,
                mode="chunks",
                seed=0,
                epoch=0,
                rank=rank,
                world_size=world,
                worker=worker,
                workers=max(1, workers),
                window_groups=window,
            )
            groups = [order.groups_of_window(w) for w in range(order.num_windows)]
            per_window += sum(len(g) for g in groups)
            nbytes += sum(int(stored[g].sum()) for g in groups)
            per_share += len(np.unique(np.concatenate(groups))) if groups else 0
    return {"windows": per_window, "shares": per_share, "bytes": nbytes}


def run_ranks(path: Path, world: int, workers: int, window: int) -> dict[str, Any]:
    """One run: the file evicted, ``world`` ranks started together, all joined. Returns what the
    benchmark's own /proc/self/io counted over the run (all ranks and workers, reaped) and the
    records of the ranks and of every process that made batches."""
    report_dir = WORK / f"run-{uuid.uuid4().hex[:8]}"
    report_dir.mkdir()
    evict([path])
    resident = resident_bytes([path])
    context = multiprocessing.get_context("fork")
    io0 = proc_io()
    t0 = time.perf_counter()
    processes = [
        context.Process(
            target=rank_process,
            args=(str(path), rank, world, workers, window, str(report_dir)),
        )
        for rank in range(world)
    ]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    wall = time.perf_counter() - t0
    io1 = proc_io()
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"a rank process failed (exit codes {failed})")
    records = read_records(report_dir)
    shutil.rmtree(report_dir)
    ranks = [r for r in records if "with_setup_s" in r]
    consumers = [r for r in records if "with_setup_s" not in r]
    return {
        "wall_s": wall,
        "rchar_all": io1["rchar"] - io0["rchar"],
        "device_read_bytes": io1["read_bytes"] - io0["read_bytes"],
        "resident_after_evict": resident,
        "ranks": sorted(ranks, key=lambda r: r["rank"]),
        "consumers": consumers,
    }


def bench_reads(cfg: Config) -> dict[str, Any]:
    print("\n== bytes read and row groups decoded per epoch")
    t0 = time.perf_counter()
    path = write_uint8_file(cfg)
    file_bytes = path.stat().st_size
    with bale.open(path) as ds:
        group_sizes = np.asarray(ds.row_group_sizes, np.int64)
        rows = len(ds)
        raw = int(ds.index.blocks["raw_size"].sum())
        stored = ds.index.blocks["stored_size"].sum(axis=1).astype(np.int64)
        codec = json.dumps(dict(ds.schema["image"].codec))
    with bale.Loader(path, ARRAY_BATCH) as loader:
        default_window = loader.window_groups
    typical = int(np.median(group_sizes))
    small_window = max(1, len(group_sizes) // TARGET_WINDOWS)
    windows = {"small": small_window, "default": default_window}
    print(
        f"{rows} rows, {raw / MB:.0f} MB decoded, file {file_bytes / MB:.0f} MB, "
        f"{len(group_sizes)} row groups (sizes {sorted(set(group_sizes.tolist()))}); windows: "
        f"{small_window} and (default) {default_window} row groups; "
        f"written in {time.perf_counter() - t0:.0f} s"
    )
    load_lazy_imports(path)
    cases = [(label, window, 1, k) for label, window in windows.items() for k in WORKER_COUNTS] + [
        (label, window, w, k) for label, window in windows.items() for w, k in RANK_LAYOUTS
    ]
    runs: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(cases))}
    load = ForeignLoad()
    for repeat in range(cfg.repeats):
        for i, (_, window, world, workers) in enumerate(cases):  # round-robin
            run = run_ranks(path, world, workers, window)
            runs[i].append(run)
            rows_served = sum(c["rows"] for c in run["consumers"])
            decodes = sum(c["decodes"] for c in run["consumers"])
            print(
                f"[{repeat}] window {window:4d}, {world} rank(s) x {workers} workers: read "
                f"{run['rchar_all'] / file_bytes:.3f}x the file, decoded "
                f"{decodes / len(group_sizes):.3f}x the row groups, {rows_served} rows, "
                f"{run['wall_s']:.1f} s"
            )
    out_cases = []
    for i, (label, window, world, workers) in enumerate(cases):
        rs = runs[i]
        consumers = world * max(1, workers)
        out_cases.append(
            {
                "window": label,
                "window_groups": window,
                "windows": -(-rows // (window * typical)),
                "world_size": world,
                "workers": workers,
                "consumers": consumers,
                "read_all": summary([r["rchar_all"] / file_bytes for r in rs]),
                "read_in_iterations": summary(
                    [sum(c["rchar_iteration"] for c in r["consumers"]) / file_bytes for r in rs]
                ),
                "decoded": summary(
                    [sum(c["decodes"] for c in r["consumers"]) / len(group_sizes) for r in rs]
                ),
                "rows_served": [sum(c["rows"] for c in r["consumers"]) for r in rs],
                "batch_makers": [len(r["consumers"]) for r in rs],
                "cold_epoch_s": summary([max(k["epoch_s"] for k in r["ranks"]) for r in rs]),
                "predicted": predicted_reads(group_sizes, stored, world, workers, window),
                "runs": rs,
            }
        )
    gc.collect()
    path.unlink()
    return {
        "file_bytes": file_bytes,
        "raw_bytes": raw,
        "rows": rows,
        "row_groups": len(group_sizes),
        "group_sizes": {
            str(k): int(v) for k, v in zip(*np.unique(group_sizes, return_counts=True), strict=True)
        },
        "typical_group_rows": typical,
        "codec": codec,
        "windows": windows,
        "cases": out_cases,
        "foreign_load": load.result(),
    }


# -- part 2: JPEG decode + crop, workers against the main process ------------------------------


def jpeg_decode() -> Any:
    return DecodeImages("jpeg", size=(224, 224), random_resized_crop=(0.08, 1), hflip=0.5)


def jpeg_epochs(
    path: Path,
    workers: int,
    persistent: bool,
    threads: int | None,
    epochs: int,
    report_dir: Path,
) -> list[dict[str, Any]]:
    """``epochs`` epochs of one DataLoader (built before the first, as a training loop does):
    each epoch's time from ``iter(loader)`` to its last batch, and to its first."""
    options: dict[str, Any] = {} if threads is None else {"num_threads": threads}
    ds = MeasuredDataset(
        path, JPEG_BATCH, shuffle="chunks", seed=0, batch_transform=jpeg_decode(), **options
    )
    ds.report_dir = str(report_dir)
    loader = DataLoader(
        ds, batch_size=None, num_workers=workers, persistent_workers=persistent and workers > 0
    )
    out = []
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        start_wall = time.time()
        t0 = time.perf_counter()
        first: float | None = None
        first_wall = 0.0
        images = 0
        for batch in loader:
            if first is None:
                first = time.perf_counter() - t0
                first_wall = time.time()
            images += len(batch["label"])
        out.append(
            {
                "epoch": epoch,
                "seconds": time.perf_counter() - t0,
                "first_batch_s": first,
                "images": images,
                "start_wall": start_wall,
                "first_wall": first_wall,
            }
        )
    del loader  # shuts persistent workers down
    gc.collect()
    ds.close()
    return out


def first_batch_probe(path: Path, **loader_kwargs: Any) -> float:
    """Seconds from ``iter(DataLoader)`` to the first batch, num_workers=0, a new dataset."""
    ds = TorchIterableDataset(
        path, JPEG_BATCH, seed=0, batch_transform=jpeg_decode(), **loader_kwargs
    )
    t0 = time.perf_counter()
    it = iter(DataLoader(ds, batch_size=None, num_workers=0))
    next(it)
    seconds = time.perf_counter() - t0
    del it
    ds.close()
    return seconds


def decode_floor(jpegs: list[bytes], labels: np.ndarray, repeats: int = 5) -> float:
    """Seconds to decode one batch of JPEG_BATCH images from memory in one thread: the least a
    first batch can cost when one thread makes it."""
    decode = jpeg_decode()
    batch = {"jpeg": jpegs[:JPEG_BATCH], "label": labels[:JPEG_BATCH]}
    decode(batch)  # first call: lazy imports, buffers
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        decode(batch)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def breakdown(epoch: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, float] | None:
    """Where the first batch's time went: until the process that makes it (worker 0, or the main
    process) entered its iteration; from there until the batch was made; then its hand-over to
    the training loop."""
    maker = [r for r in records if r["epoch"] == epoch["epoch"] and r["worker"] in (0, None)]
    maker = [r for r in maker if r["enter"] >= epoch["start_wall"] - 1e-3]
    if not maker or maker[0]["first_batch"] is None:
        return None
    r = min(maker, key=lambda r: r["enter"])
    return {
        "start_s": r["enter"] - epoch["start_wall"],
        "make_s": r["first_batch"] - r["enter"],
        "hand_over_s": epoch["first_wall"] - r["first_batch"],
        "threads": r.get("threads") or 0,
    }


def bench_jpeg(cfg: Config) -> dict[str, Any]:
    print(f"\n== JPEG decode + crop: {cfg.n_jpeg} images ~375x500")
    jpegs, labels = photo_data.jpeg_images(cfg.n_jpeg, seed=0)
    path = WORK / "jpeg.bale"
    bale.write(path, {"jpeg": jpegs, "label": labels}, overwrite=True)
    with bale.open(path) as ds:
        groups = ds.num_row_groups
        group_rows = int(np.median(ds.row_group_sizes))
    with bale.Loader(path, JPEG_BATCH) as loader:
        window = loader.window_groups
    read_through([path])  # warm: the question is decoding, not the disk
    load = ForeignLoad()
    floor = decode_floor(jpegs, labels)
    results: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in JPEG_CONFIGS}
    breakdowns: dict[str, list[list[dict[str, float] | None]]] = {n: [] for n in JPEG_CONFIGS}
    loads: dict[str, list[dict[str, float]]] = {name: [] for name in JPEG_CONFIGS}
    probes: dict[str, list[float]] = {"none": [], "small_window": [], "one_thread": []}
    for repeat in range(cfg.jpeg_repeats):
        for name, (workers, persistent, threads) in JPEG_CONFIGS.items():  # round-robin
            report_dir = WORK / f"jpeg-{uuid.uuid4().hex[:8]}"
            report_dir.mkdir()
            run_load, cpu0 = ForeignLoad(), own_cpu_seconds()
            epochs = jpeg_epochs(path, workers, persistent, threads, cfg.epochs, report_dir)
            # All workers have exited and been reaped: os.times() counts their CPU time.
            loads[name].append({**run_load.result(), "own_cpu_s": own_cpu_seconds() - cpu0})
            records = read_records(report_dir)
            shutil.rmtree(report_dir)
            results[name].append(epochs)
            breakdowns[name].append([breakdown(e, records) for e in epochs])
            print(
                f"[{repeat}] {name}: epochs "
                + ", ".join(f"{e['seconds']:.2f} s" for e in epochs)
                + "; first batch "
                + ", ".join(f"{e['first_batch_s']:.2f} s" for e in epochs)
                + f"; other processes {loads[name][-1]['foreign_cores']:.2f} cores"
            )
        probes["none"].append(first_batch_probe(path, shuffle="none"))
        probes["small_window"].append(
            first_batch_probe(path, shuffle="chunks", window_groups=PROBE_WINDOW_GROUPS)
        )
        probes["one_thread"].append(first_batch_probe(path, shuffle="chunks", num_threads=1))
    out_configs = {}
    for name in JPEG_CONFIGS:
        reps = results[name]
        per_epoch = [
            {
                "seconds": summary([rep[e]["seconds"] for rep in reps]),
                "first_batch_s": summary([rep[e]["first_batch_s"] for rep in reps]),
                "breakdown": median_breakdown([b[e] for b in breakdowns[name]]),
            }
            for e in range(cfg.epochs)
        ]
        out_configs[name] = {
            "epochs": per_epoch,
            # Per repeat, the mean epoch of that DataLoader; then the median over repeats.
            "epoch_s": summary([statistics.mean(e["seconds"] for e in rep) for rep in reps]),
            "images": reps[0][0]["images"],
            # CPU seconds of this process tree per epoch, and other processes' cores meanwhile.
            "cpu_per_epoch_s": summary([x["own_cpu_s"] / cfg.epochs for x in loads[name]]),
            "foreign_cores": summary([x["foreign_cores"] for x in loads[name]]),
            "runs": reps,
            "loads": loads[name],
        }
    path.unlink()
    return {
        "images": cfg.n_jpeg,
        "jpeg_bytes": sum(len(j) for j in jpegs),
        "row_groups": groups,
        "group_rows": group_rows,
        "default_window_groups": window,
        "decode_floor_s": floor,
        "probes": {k: summary(v) for k, v in probes.items()},
        "configs": out_configs,
        "foreign_load": load.result(),
    }


def median_breakdown(items: list[dict[str, float] | None]) -> dict[str, float] | None:
    found = [b for b in items if b is not None]
    if not found:
        return None
    return {k: statistics.median(b[k] for b in found) for k in found[0]}


# -- aims ----------------------------------------------------------------------------------------


def case_label(c: dict[str, Any]) -> str:
    ranks = "1 rank" if c["world_size"] == 1 else f"{c['world_size']} ranks"
    return f"{ranks}, num_workers={c['workers']}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def within(x: float) -> bool:
    return abs(x - 1.0) <= AIM_READ_TOLERANCE


def judge_reads(reads: dict[str, Any]) -> list[Verdict]:
    verdicts = []
    for label in reads["windows"]:
        cases = [c for c in reads["cases"] if c["window"] == label]
        window = cases[0]["window_groups"]
        worst_read = max(cases, key=lambda c: abs(c["read_all"]["median"] - 1))
        worst_decode = max(cases, key=lambda c: abs(c["decoded"]["median"] - 1))
        passed = [c for c in cases if within(c["read_all"]["median"])]
        verdicts.append(
            Verdict(
                f"window_groups={window} ({plural(cases[0]['windows'], 'window')}): bytes read per epoch "
                f"= 1.0x the file +-{AIM_READ_TOLERANCE:.0%}, every case",
                len(passed) == len(cases),
                f"{len(passed)} of {len(cases)} cases within; farthest "
                f"{worst_read['read_all']['median']:.3f}x ({case_label(worst_read)})",
            )
        )
        passed = [c for c in cases if within(c["decoded"]["median"])]
        verdicts.append(
            Verdict(
                f"window_groups={window}: row groups decoded per epoch = 1.0x "
                f"+-{AIM_READ_TOLERANCE:.0%}, every case",
                len(passed) == len(cases),
                f"{len(passed)} of {len(cases)} cases within; farthest "
                f"{worst_decode['decoded']['median']:.3f}x ({case_label(worst_decode)})",
            )
        )
    return verdicts


def judge_jpeg(jpeg: dict[str, Any]) -> list[Verdict]:
    configs = jpeg["configs"]
    base = configs[BASELINE]["epoch_s"]
    verdicts = []
    for name, c in configs.items():
        if name == BASELINE:
            continue
        s = c["epoch_s"]
        # Not slower: the median no higher, or the difference inside the run-to-run spread
        # (the fastest repeat with workers no slower than the slowest without).
        overlap = s["min"] <= base["max"]
        verdicts.append(
            Verdict(
                f"JPEG: {name} not slower than {BASELINE} (epoch time; median, or within the "
                "min-max spread of the repeats)",
                s["median"] <= base["median"] or overlap,
                f"{fmt_range(s, 2)} s vs {fmt_range(base, 2)} s per epoch "
                f"({s['median'] / base['median']:.2f}x the median time; spreads "
                f"{'overlap' if overlap else 'apart'})",
            )
        )
    for name, c in configs.items():
        firsts = [e["first_batch_s"]["median"] for e in c["epochs"]]
        # The aim's means is reading the next epoch's first window during the epoch before:
        # possible from the second epoch on, where the process making batches lives on.
        verdicts.append(
            Verdict(
                f"JPEG: {name}, first batch of each epoch after the first < {AIM_FIRST_BATCH_S} s",
                max(firsts[1:]) < AIM_FIRST_BATCH_S,
                "epochs " + ", ".join(f"{f:.2f}" for f in firsts) + " s (epoch 0 not judged)",
            )
        )
    return verdicts


# -- report --------------------------------------------------------------------------------------


def reads_table(reads: dict[str, Any], label: str) -> list[str]:
    groups = reads["row_groups"]
    lines = [
        "| ranks x workers per rank | processes making batches | bytes read / file, all "
        "processes | bytes read in iterations / file | predicted bytes / file | row groups "
        "decoded / row groups | predicted (of which: windows cutting a group) | rows served | "
        "cold epoch s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in (c for c in reads["cases"] if c["window"] == label):
        p = c["predicted"]
        rows = sorted(set(c["rows_served"]))
        lines.append(
            f"| {c['world_size']} x {c['workers']} | {c['batch_makers'][0]} | "
            f"{fmt_range(c['read_all'], 3)} | {fmt_range(c['read_in_iterations'], 3)} | "
            f"{p['bytes'] / reads['file_bytes']:.3f} | {fmt_range(c['decoded'], 3)} | "
            f"{p['windows'] / groups:.3f} (+{p['windows'] - p['shares']}) | "
            f"{', '.join(map(str, rows))} | {fmt_range(c['cold_epoch_s'], 2)} |"
        )
    return lines


def reads_section(reads: dict[str, Any], repeats: int) -> list[str]:
    sizes = ", ".join(f"{n} of {k} rows" for k, n in reads["group_sizes"].items())
    lines = [
        "## Bytes read and row groups decoded per epoch",
        "",
        f"A file of {reads['rows']} 64x64x3 uint8 images ({reads['raw_bytes'] / MB:.0f} MB "
        f"decoded, {reads['file_bytes'] / MB:.0f} MB on disk, codec `{reads['codec']}`), "
        f"{reads['row_groups']} row groups ({sizes}: the images written in one go, the last "
        "row group short as in any file whose rows are not a multiple of the row-group size). "
        f"One epoch of `DataLoader(TorchIterableDataset(path, {ARRAY_BATCH}, shuffle='chunks', "
        "seed=0, rank=r, world_size=W, window_groups=...), batch_size=None, num_workers=K)` per "
        "rank, the ranks being forked processes started together; the adapter's default "
        f"`num_threads` ({DEFAULT_THREADS} in a process with no workers; in a DataLoader worker, "
        "as this bale sets it) and `memory_budget`. Median (min-max) of "
        f"{repeats} cold runs.",
        "",
        "- Bytes read / file, all processes: `rchar` of /proc/self/io of the benchmark over the "
        "run, which includes every rank and worker (the kernel adds a reaped child's counters "
        "to its parent's), divided by the file size. It counts every read call, page-cache "
        "hits included: the file's blocks, its index (opened by each rank and again by each "
        "worker) and the little else those processes read.",
        "- Bytes read in iterations: the same, summed over the processes that make batches, "
        "from the start to the end of their `__iter__` only.",
        "- Row groups decoded: calls of `bale.Dataset.read_row_group` in those processes (a "
        "wrapper installed by the benchmark counts them) over the file's row groups.",
        "- Predicted: the row groups each consumer's windows touch, computed from "
        "`bale.loader.order.epoch_order` alone (nothing read), and their stored bytes from the "
        "file's index; in brackets, how many of those row groups are there only because a "
        "window boundary cuts a row group, which each of the two windows then reads and "
        "decodes in full.",
        "- Rows served: all ranks together (`partition='drop'` leaves out fewer rows than there "
        "are consumers).",
        "",
    ]
    for label, window in reads["windows"].items():
        cases = [c for c in reads["cases"] if c["window"] == label]
        title = "default window" if label == "default" else "small window"
        lines += [
            f"### {title}: window_groups={window} ({plural(cases[0]['windows'], 'window')} per epoch)",
            "",
            *reads_table(reads, label),
            "",
        ]
    runs = [r for c in reads["cases"] for r in c["runs"]]
    resident = [r["resident_after_evict"] for r in runs if r["resident_after_evict"] is not None]
    device = [r["device_read_bytes"] / reads["file_bytes"] for r in runs]
    load = reads["foreign_load"]
    lines += [
        "Eviction check: "
        + (
            f"at most {max(resident) / MB:.1f} MB of the file was resident right after "
            "eviction (`fincore`); "
            if resident
            else "`fincore` not available; "
        )
        + f"the runs fetched {min(device):.2f}x to {max(device):.2f}x the file from the block "
        "device (`read_bytes` of /proc/self/io, all processes). This is a VM on a virtual "
        "disk: a cold read in the guest may still come from the host's cache.",
        "",
        f"Other processes used {load['foreign_cores']:.2f} cores on average during this "
        f"section ({load['wall_s']:.0f} s).",
        "",
    ]
    return lines


def jpeg_section(jpeg: dict[str, Any], repeats: int) -> list[str]:
    configs = jpeg["configs"]
    epochs = len(next(iter(configs.values()))["epochs"])
    base = configs[BASELINE]["epoch_s"]["median"]
    head = " | ".join(f"epoch {e} s" for e in range(epochs))
    lines = [
        "## JPEG decode + crop: DataLoader workers against the main process",
        "",
        f"{jpeg['images']} JPEGs ({jpeg['jpeg_bytes'] / MB:.0f} MB, ~375x500, q90; "
        f"{jpeg['row_groups']} row groups of ~{jpeg['group_rows']} images; the default window, "
        f"{jpeg['default_window_groups']} row groups, holds the whole file). "
        f"`DataLoader(TorchIterableDataset(path, {JPEG_BATCH}, shuffle='chunks', seed=0, "
        "batch_transform=DecodeImages('jpeg', size=(224, 224), random_resized_crop=(0.08, 1), "
        "hflip=0.5)), batch_size=None, num_workers=K)`, the adapter's default `num_threads` "
        "unless the row says otherwise (the threads of each process that makes batches are "
        "given under *Reading the numbers*). The file is in the page cache (warm). One "
        "DataLoader per row, "
        f"built before its {epochs} epochs, `set_epoch` before each; an epoch is timed from "
        f"`iter(loader)` to its last batch. Median (min-max) of {repeats} repeats, round-robin.",
        "",
        "### Epoch time",
        "",
        f"| DataLoader | {head} | mean epoch s | images/s | time vs {BASELINE} | CPU s per "
        "epoch | other processes, cores |",
        "|---|" + "---:|" * (epochs + 5),
    ]
    for name, c in configs.items():
        s = c["epoch_s"]["median"]
        lines.append(
            f"| {name} | "
            + " | ".join(fmt_range(e["seconds"], 2) for e in c["epochs"])
            + f" | {fmt_range(c['epoch_s'], 2)} | {c['images'] / s:.0f} | {s / base:.2f} | "
            f"{fmt_range(c['cpu_per_epoch_s'], 1)} | {fmt_range(c['foreign_cores'], 2)} |"
        )
    lines += [
        "",
        "Mean epoch s: per repeat, the mean of its epochs; then the median (min-max) over "
        "repeats. CPU s per epoch: user + system time of the benchmark and its workers (reaped "
        "at the end of each DataLoader's epochs). Other processes, cores: CPU time used by the "
        "rest of the machine over wall time while the row's DataLoader ran. Threads share the "
        "cores with other processes' threads, so on a busy machine a configuration with more "
        "threads gets a larger share: compare rows whose other-process load is alike.",
    ]
    lines += [
        "",
        "### Time to the first batch of each epoch",
        "",
        f"| DataLoader | {head} |",
        "|---|" + "---:|" * epochs,
    ]
    for name, c in configs.items():
        lines.append(
            f"| {name} | "
            + " | ".join(fmt_range(e["first_batch_s"], 3) for e in c["epochs"])
            + " |"
        )
    lines += [
        "",
        "Where the first batch's time goes (medians; the batch comes from worker 0, or from the "
        "main process with num_workers=0): *start* is from `iter(loader)` until that process "
        "enters the dataset's `__iter__` (worker start-up: fork, and the DataLoader's own "
        "set-up); *make* is from there until the batch is made (the Loader built in that "
        "process, its first window read whole, the batch decoded); *hand-over* is until the "
        "training loop has it (the tensors passed through shared memory).",
        "",
        "| DataLoader | epoch | start s | make s | hand-over s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, c in configs.items():
        for e, epoch in enumerate(c["epochs"]):
            b = epoch["breakdown"]
            if b is None:
                lines.append(f"| {name} | {e} | n/a | n/a | n/a |")
                continue
            lines.append(
                f"| {name} | {e} | {b['start_s']:.3f} | {b['make_s']:.3f} | "
                f"{b['hand_over_s']:.3f} |"
            )
    p = jpeg["probes"]
    lines += [
        "",
        "For comparison, with num_workers=0 and a new dataset each time:",
        "",
        f"- decoding one batch of {JPEG_BATCH} from memory in one thread (no file, no loader): "
        f"{jpeg['decode_floor_s']:.3f} s, the least a first batch made by one thread costs;",
        f"- first batch with `shuffle='none'` (no window to fill): {fmt_range(p['none'], 3)} s;",
        f"- first batch with `shuffle='chunks', window_groups={PROBE_WINDOW_GROUPS}`: "
        f"{fmt_range(p['small_window'], 3)} s;",
        f"- first batch with `shuffle='chunks', num_threads=1` (one batch made at a time): "
        f"{fmt_range(p['one_thread'], 3)} s.",
        "",
    ]
    load = jpeg["foreign_load"]
    lines += [
        f"Other processes used {load['foreign_cores']:.2f} cores on average during this "
        f"section ({load['wall_s']:.0f} s).",
        "",
    ]
    return lines


def notes_section(results: dict[str, Any]) -> list[str]:
    """Facts computed from this run that explain the verdicts."""
    reads = results["reads"]
    groups = reads["row_groups"]
    lines = ["## Reading the numbers", ""]
    for label, window in reads["windows"].items():
        cases = [c for c in reads["cases"] if c["window"] == label]
        one = next(c for c in cases if c["world_size"] == 1 and c["workers"] == 0)
        cut = one["predicted"]["windows"] - one["predicted"]["shares"]
        measured = round(one["decoded"]["median"] * groups) - groups
        text = (
            f"- window_groups={window} ({plural(one['windows'], 'window')}), one process: {measured} row "
            f"groups decoded beyond the file's {groups}; the order predicts {cut} from windows "
            "that cut a row group."
        )
        if cut:
            bound = 1 + (one["windows"] - 1) / groups
            text += (
                " A window holds window_groups x (typical row-group rows) rows of the shuffled "
                "stream of whole row groups, so once the short row group has passed, every later "
                "window boundary falls inside a row group, which both windows read and decode "
                "whole (chunk shuffling keeps no block cache). Where the short row group lands "
                "depends on the seed and epoch: the cost ranges from none (it comes last) to "
                f"one row group per window boundary, {bound:.3f}x here (about 1 + "
                "1/window_groups): the smaller the window, the more it costs."
            )
        lines.append(text)
        many = max(cases, key=lambda c: c["consumers"])
        lines.append(
            f"  With {many['consumers']} consumers ({case_label(many)}): "
            f"{many['predicted']['shares'] - groups} more from neighbouring consumers sharing a "
            "row group at the edges of their stretches (at most consumers - 1), and "
            f"{many['predicted']['windows'] - many['predicted']['shares']} from window "
            "boundaries."
        )
    extra = [
        (c["read_all"]["median"] - c["predicted"]["bytes"] / reads["file_bytes"])
        * reads["file_bytes"]
        for c in reads["cases"]
    ]
    lines.append(
        f"- Bytes read beyond the row groups the order predicts: {min(extra) / MB:.2f} to "
        f"{max(extra) / MB:.2f} MB per epoch: every process that opens the file reads its "
        "header and index, and each DataLoader worker reads about 0.2 MB at start-up "
        "(PyTorch's seeding of a new worker imports numpy.random and records a stack trace, "
        "which reads Python source files); workers and their rank also exchange small "
        "messages through pipes. "
        "Measured decodes equal the predicted ones: the extra reading is the order's doing, "
        "not a cache dropping blocks."
        if all(c["decoded"]["median"] * groups == c["predicted"]["windows"] for c in reads["cases"])
        else f"- Bytes read beyond the row groups the order predicts: {min(extra) / MB:.2f} to "
        f"{max(extra) / MB:.2f} MB per epoch; measured decodes differ from the predicted ones "
        "in some cases (see the tables)."
    )
    jpeg = results["jpeg"]
    cores = results["environment"]["cores"]
    floor = jpeg["decode_floor_s"]
    configs = jpeg["configs"]
    base = configs[BASELINE]
    base_cpu = base["cpu_per_epoch_s"]["median"]
    extra_cpu = ", ".join(
        f"{name} {c['cpu_per_epoch_s']['median'] - base_cpu:+.1f} s"
        for name, c in configs.items()
        if name != BASELINE
    )
    batch_mb = JPEG_BATCH * 224 * 224 * 3 / MB
    base_threads = (base["epochs"][0]["breakdown"] or {}).get("threads") or "its"
    lines.append(
        f"- JPEG epoch time: with num_workers=0 the main process's {base_threads} threads "
        f"already keep {base_cpu / base['epoch_s']['median']:.1f} of the {cores} cores busy "
        f"({base_cpu:.1f} CPU s per {base['epoch_s']['median']:.2f} s epoch), so on this "
        "machine workers cannot add parallelism, only cost. CPU time per epoch against "
        f"num_workers=0: {extra_cpu}. Not broken down here; what workers add is starting "
        f"(each epoch, unless persistent), copying each {batch_mb:.1f} MB batch into a slot of "
        "shared memory the worker reuses (`bale.adapters._handover`; PyTorch's own hand-over "
        "would take fresh pages for every batch), and threads beyond the cores."
    )
    for name, c in jpeg["configs"].items():
        b = c["epochs"][0]["breakdown"]
        if b is None:
            continue
        workers = JPEG_CONFIGS[name][0]
        threads = f"{b['threads']:.0f}" if b["threads"] else "?"
        processes = f"{workers} workers" if workers else "the main process"
        lines.append(
            f"- JPEG, {name}, epoch 0: first batch {c['epochs'][0]['first_batch_s']['median']:.2f}"
            f" s = start {b['start_s']:.2f} + make {b['make_s']:.2f} + hand-over "
            f"{b['hand_over_s']:.2f} s; batches made by {processes}, {threads} bale thread(s) "
            "per process."
        )
    p = jpeg["probes"]
    lines.append(
        f"- JPEG: decoding one batch of {JPEG_BATCH} alone in one thread, from memory, takes "
        f"{floor:.2f} s on this machine: the least a first batch made by one thread costs "
        f"(about {floor / cores:.2f} s if it were split among the {cores} cores). With "
        "num_workers=0 and a new dataset, the first batch came after "
        f"{p['one_thread']['median']:.2f} s with num_threads=1, "
        f"{p['small_window']['median']:.2f} s with window_groups={PROBE_WINDOW_GROUPS} and "
        f"{p['none']['median']:.2f} s with `shuffle='none'` (no window to fill). What *make* "
        "adds to the decode is the process's Loader set-up and its first window's read; what "
        "*start* and *hand-over* add is the DataLoader's."
    )
    return [*lines, ""]


def src_note(results: dict[str, Any]) -> str:
    """The digest of the bale source measured, and whether src/ changed during the run."""
    start = results["environment"]["src_digest"]
    if results["src_digest_at_end"] != start:
        return (
            f"{start} (src/ was edited during the run, to {results['src_digest_at_end']}; the "
            "ranks and workers are forked from the benchmark and run the code it imported at "
            "the start)"
        )
    return f"{start} (unchanged during the run)"


def report(results: dict[str, Any], verdicts: list[Verdict]) -> str:
    env = results["environment"]
    cfg = results["config"]
    command = ".venv/bin/python -m bench.distributed_bench" + (" --quick" if cfg["quick"] else "")
    lines = [
        "# bale distributed and DataLoader-worker benchmark",
        "",
        f"Date: {env['date']}. Command: `{command}` (total {results['total_seconds']:.0f} s).",
        "",
        *machine_section(
            env,
            src_note(results),
            note="The machine is shared with other work: each section records how many cores other processes used meanwhile. Compare ratios within one run rather than absolute times.",
        ),
        "",
        "## Method",
        "",
        "Data from `bench/photo_data.py` (real scikit-image photos, deterministic seeds). Ranks "
        "are simulated by processes forked from the benchmark, each given `rank=` and "
        "`world_size=` explicitly, all started together; DataLoader workers are forked by "
        "their rank (PyTorch's default on Linux). Modules loaded on first use are loaded "
        "before any measurement (one epoch over a small file), so forked processes do not "
        "read module files during the measured epochs. Runs are round-robin over the cases, "
        "each cold: `os.sync()` + `posix_fadvise(POSIX_FADV_DONTNEED)` on the file first. "
        "The JPEG part runs warm. No figure is asserted anywhere; each aim below is judged "
        "as measured.",
        "",
        *aims_section(verdicts),
    ]
    lines += notes_section(results)
    lines += reads_section(results["reads"], cfg["repeats"])
    lines += jpeg_section(results["jpeg"], cfg["jpeg_repeats"])
    return "\n".join(lines) + "\n"


# -- main ----------------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    packages = ("numpy", "torch", "simplejpeg", "pillow", "blosc2", "zstandard")
    return describe(WORK, packages)


def run_all(cfg: Config) -> dict[str, Any]:
    results: dict[str, Any] = {"environment": environment(), "config": vars(cfg)}
    results["reads"] = bench_reads(cfg)
    results["jpeg"] = bench_jpeg(cfg)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, under a minute")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    # PyTorch warns when num_workers exceeds the cores (4 workers on 2 cores): measured anyway.
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    DECODES.install()
    cfg = Config.make(args.quick)
    WORK.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        results = run_all(cfg)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    verdicts = judge_reads(results["reads"]) + judge_jpeg(results["jpeg"])
    results["aims"] = [v.to_json() for v in verdicts]
    results["total_seconds"] = time.perf_counter() - t0
    results["src_digest_at_end"] = src_digest()
    written = write_report("distributed_bench", results, report(results, verdicts), quick=cfg.quick)
    print_aims(verdicts)
    print(f"bale source digest: {src_note(results)}")
    print(f"total {results['total_seconds']:.0f} s; wrote {written}")


if __name__ == "__main__":
    main()
