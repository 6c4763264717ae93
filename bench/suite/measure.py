"""One measurement of one tool on one data kind, in the process that runs it; prints one JSON line.

bench/suite/run.py starts a fresh interpreter for each measurement, so no tool inherits another's
imports, caches, threads or memory (quick mode runs the read measures of one tool, kind and
cache state in one process, each with a fresh adapter, to save interpreter start-ups). Measures:

- ``probe``: can the tool be imported here; its versions.
- ``write``: write the kind's rows (fsync included): seconds, bytes on disk, files, peak RSS.
- ``verify``: untimed check that the stored rows equal the source (order, permutation, rows).
- ``seq`` / ``shuf``: one sequential / shuffled epoch, samples/s; ``shuf`` also gives the
  shuffle's dispersion ratio on the class-sorted rows (``bale.loader.quality``).
- ``row``: random single-row latency, p50 / p99.
- ``gather64``: latency of a batch of 64 distinct random rows in shuffled order, read with the
  tool's own batch read where it has one (``Adapter.get_rows``), p50 / p99 per batch. The first
  batch is checked against the source rows (untimed). Warm: ``--gather-warm`` batches in one
  open store. Cold: ``--gather-cold`` batches, each in a freshly opened store whose files were
  then dropped from the page cache, so that neither the OS nor the tool holds any of it.
- ``decode`` (JPEG only): a shuffled epoch whose bytes are decoded by the same simplejpeg
  stage for every tool (2 threads, fed by a prefetch thread), images/s.

Each read measure first makes the cache ``warm`` (every file read once) or ``cold``
(``os.sync`` + ``posix_fadvise(DONTNEED)`` of every file, then the residency left is measured
with fincore and recorded), then opens the store (timed as ``open_s``) and runs.

    python -m bench.suite.measure WORK TOOL KIND MEASURE[,MEASURE...] [--cache cold] [--cap-s 30]
        [--row-n 500] [--gather-warm 200] [--gather-cold 30]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import queue
import resource
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import (
    ForeignLoad,
    device_read_bytes,
    evict,
    read_through,
    reset_peak_rss,
    resident_bytes,
    src_digest,
    vm_status,
)
from bench.suite import adapters, data
from bench.suite.adapters.base import Adapter, Batch, Unsupported, fsync_tree

MEASURES = ("probe", "write", "verify", "seq", "shuf", "row", "gather64", "decode")
#: the measures that read a store, warm or cold
READS = ("seq", "shuf", "row", "gather64", "decode")
GATHER = 64
BATCH = {"jpeg": 64, "uint8": 256, "act": 256}
SEED = 0
MiB = 1 << 20


def store_dir(work: Path, tool: str, kind: str) -> Path:
    return work / "stores" / tool / kind


def payload_bytes(x: Any) -> int:
    if isinstance(x, np.ndarray):
        return int(x.nbytes)
    return sum(len(r) for r in x)


def disk_usage(files: list[Path]) -> tuple[int, int]:
    """(sum of file sizes, bytes allocated on disk)."""
    stats = [p.stat() for p in files]
    return sum(s.st_size for s in stats), sum(s.st_blocks * 512 for s in stats)


# -- measures ---------------------------------------------------------------------------------


def probe(adapter: Adapter) -> dict[str, Any]:
    adapter.check()
    return {
        "versions": adapter.versions(),
        "name": adapter.name,
        "shuffle": adapter.shuffle_note,
        "lazy_open": adapter.lazy_open,
        "in_memory": adapter.in_memory,
    }


def write(adapter: Adapter, work: Path, tool: str, kind: str) -> dict[str, Any]:
    out = store_dir(work, tool, kind)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    source = data.load(work / "data", kind)
    gc.collect()
    reset_peak_rss()
    baseline = vm_status()["VmRSS"]
    load = ForeignLoad()
    t0 = time.perf_counter()
    adapter.write(source, out)
    fsync_tree(out)
    seconds = time.perf_counter() - t0
    peak = vm_status()["VmHWM"]
    files = adapter.files(out)
    size, allocated = disk_usage(files)
    return {
        "seconds": seconds,
        "raw_bytes": source.spec.raw_bytes,
        "bytes": size,
        "allocated_bytes": allocated,
        "files": len(files),
        "peak_rss": peak,
        "rss_before": baseline,
        "peak_rss_over_source": peak - baseline,
        "children_maxrss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
        "load": load.result(),
        "store": adapter.describe_store(out),
    }


def _digest(x: Any) -> bytes:
    import hashlib

    raw = np.ascontiguousarray(x).tobytes() if isinstance(x, np.ndarray) else bytes(x)
    return hashlib.sha1(raw).digest()


def verify(adapter: Adapter, work: Path, tool: str, kind: str) -> dict[str, Any]:
    source = data.load(work / "data", kind)
    adapter.open(store_dir(work, tool, kind), source.spec)
    expected = [(_digest(source.x[i]), int(source.label[i])) for i in range(len(source))]
    problems = []
    try:
        seq = [
            (_digest(x), int(y)) for b in adapter.iter_sequential(BATCH[kind]) for x, y in _rows(b)
        ]
        if adapter.ordered and seq != expected:
            problems.append("sequential epoch differs from the written rows")
        if sorted(seq) != sorted(expected):
            problems.append("sequential epoch is not the written rows")
        shuf = [
            (_digest(x), int(y))
            for b in adapter.iter_shuffled(BATCH[kind], SEED, 0)
            for x, y in _rows(b)
        ]
        if sorted(shuf) != sorted(expected):
            problems.append(f"shuffled epoch has {len(shuf)} rows, not a permutation of the source")
        rng = np.random.default_rng(1)
        for i in rng.integers(0, len(source), 20).tolist():
            try:
                x, y = adapter.get_row(i)
            except Unsupported:
                break
            if (_digest(x), int(y)) != expected[i]:
                problems.append(f"get_row({i}) differs from the source")
                break
    finally:
        adapter.close()
    if problems:
        raise RuntimeError("; ".join(problems))
    return {"rows": len(source)}


def _rows(batch: Batch) -> Iterator[tuple[Any, Any]]:
    x, labels = batch
    if len(x) != len(labels):
        raise RuntimeError(f"batch with {len(x)} rows and {len(labels)} labels")
    return zip(x, labels, strict=True)


def _epoch(
    batches: Iterator[Batch], cap_s: float, batch_size: int, keep_labels: bool
) -> dict[str, Any]:
    rows = nbytes = 0
    labels: list[np.ndarray] = []
    first = 0.0
    capped = False
    t0 = time.perf_counter()
    try:
        for x, y in batches:
            if not rows:
                first = time.perf_counter() - t0
            rows += len(y)
            nbytes += payload_bytes(x)
            if keep_labels and len(y) == batch_size:
                labels.append(np.asarray(y))
            if time.perf_counter() - t0 > cap_s:
                capped = True
                break
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # stops DataLoader workers and loader threads of a capped epoch
    seconds = time.perf_counter() - t0
    out: dict[str, Any] = {
        "seconds": seconds,
        "rows": rows,
        "payload_bytes": nbytes,
        "first_batch_s": first,
        "capped": capped,
    }
    if keep_labels:
        out["label_batches"] = labels
    return out


def _decode_epoch(batches: Iterator[Batch], cap_s: float) -> dict[str, Any]:
    """The shuffled epoch, each JPEG decoded by simplejpeg in a 2-thread pool while a prefetch
    thread pulls the next batches from the tool: the same stage for every tool."""
    import simplejpeg

    q: queue.Queue[Batch | None] = queue.Queue(maxsize=4)
    stop = threading.Event()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            for b in batches:
                while not stop.is_set():
                    try:
                        q.put(b, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
        except BaseException as exc:
            failure.append(exc)
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
            q.put(None)

    rows = pixels = 0
    capped = False
    producer = threading.Thread(target=produce, daemon=True)
    t0 = time.perf_counter()
    first = 0.0
    with ThreadPoolExecutor(2) as pool:
        producer.start()
        while (b := q.get()) is not None:
            images = list(pool.map(simplejpeg.decode_jpeg, b[0]))
            if not rows:
                first = time.perf_counter() - t0
            rows += len(images)
            pixels += sum(int(im.size) for im in images)
            if time.perf_counter() - t0 > cap_s:
                capped = True
                break
        seconds = time.perf_counter() - t0
        stop.set()
        if capped:  # let the producer see the stop, close the tool's iterator and end
            while q.get() is not None:
                pass
    producer.join()
    if failure:
        raise failure[0]
    return {
        "seconds": seconds,
        "rows": rows,
        "decoded_bytes": pixels,
        "first_batch_s": first,
        "capped": capped,
    }


def _row_latency(adapter: Adapter, rows: int, n: int, cap_s: float) -> dict[str, Any]:
    indices = np.random.default_rng(SEED).integers(0, rows, n).tolist()
    lat: list[float] = []
    t_start = time.perf_counter()
    for i in indices:
        t0 = time.perf_counter()
        x, _ = adapter.get_row(i)
        if isinstance(x, np.ndarray):
            x = np.array(x)  # a lazy view (memmap row) is not a read until it is copied
        lat.append(time.perf_counter() - t0)
        if t0 - t_start > cap_s:
            break
    return _latency_stats(lat)


def gather_indices(rows: int, batches: int, seed: int) -> list[np.ndarray]:
    """``batches`` batches of GATHER distinct random rows each, in shuffled (unsorted) order."""
    rng = np.random.default_rng(seed)
    size = min(GATHER, rows)
    return [rng.choice(rows, size, replace=False).astype(np.int64) for _ in range(batches)]


def check_gather(adapter: Adapter, source: data.Source, idx: np.ndarray) -> None:
    """Raise unless ``get_rows(idx)`` gives the source's rows at ``idx``, in that order."""
    x, labels = adapter.get_rows(idx)
    if len(x) != len(idx) or len(labels) != len(idx):
        raise RuntimeError(f"get_rows gave {len(x)} rows and {len(labels)} labels for {len(idx)}")
    for j, i in enumerate(idx.tolist()):
        got = x[j]
        if not source.spec.is_bytes and (
            got.dtype != np.dtype(source.spec.dtype) or tuple(got.shape) != source.spec.shape
        ):
            raise RuntimeError(f"get_rows: row {i} has dtype {got.dtype} shape {got.shape}")
        if _digest(got) != _digest(source.x[i]) or int(labels[j]) != int(source.label[i]):
            raise RuntimeError(f"get_rows: row {i} (position {j}) differs from the source")


def _timed_gather(adapter: Adapter, idx: np.ndarray) -> float:
    t0 = time.perf_counter()
    x, _ = adapter.get_rows(idx)
    if isinstance(x, np.memmap):
        x = np.array(x)  # a lazy view is not a read until it is copied
    return time.perf_counter() - t0


def _latency_stats(lat: list[float]) -> dict[str, Any]:
    arr = np.array(lat)
    return {
        "n": len(lat),
        "p50_s": float(np.percentile(arr, 50)),
        "p99_s": float(np.percentile(arr, 99)),
        "mean_s": float(arr.mean()),
        "first_s": float(arr[0]),
    }


def gather_latency(
    tool: str, work: Path, kind: str, cache: str, batches: int, cap_s: float
) -> dict[str, Any]:
    """The ``gather64`` measure; see the module docstring. Each batch's time covers
    ``get_rows`` only: opening, eviction and checks are outside it."""
    spec = data.load_spec(work / "data", kind)
    out_dir = store_dir(work, tool, kind)
    indices = gather_indices(spec.rows, batches + 1, SEED)
    source = data.load(work / "data", kind)
    adapter = adapters.load(tool)
    files = adapter.files(out_dir)
    size, _ = disk_usage(files)
    adapter.open(out_dir, spec)
    try:
        check_gather(adapter, source, indices[0])  # also the warm-up: imports, lazy opens
    finally:
        adapter.close()
    del source, adapter
    gc.collect()
    lat: list[float] = []
    resident: list[int | None] = []
    load = ForeignLoad()
    dev0 = device_read_bytes()
    if cache == "warm":
        read_through(files)
        resident.append(resident_bytes(files))
        adapter = adapters.load(tool)
        adapter.open(out_dir, spec)
        try:
            _timed_gather(adapter, indices[0])  # the checked batch again: not counted
            for idx in indices[1:]:
                lat.append(_timed_gather(adapter, idx))
                if sum(lat) > cap_s:
                    break
        finally:
            adapter.close()
    else:
        t_start = time.perf_counter()
        for idx in indices[1:]:
            adapter = adapters.load(tool)
            adapter.open(out_dir, spec)
            try:
                evict(files)
                resident.append(resident_bytes(files))
                lat.append(_timed_gather(adapter, idx))
            finally:
                adapter.close()
            del adapter
            gc.collect()  # drops the store's maps, so that the next eviction reaches every page
            if time.perf_counter() - t_start > cap_s:
                break
    known = [r for r in resident if r is not None]
    return {
        **_latency_stats(lat),
        "batch": len(indices[0]),
        "capped": len(lat) < batches,
        "resident_before": max(known) if known else None,
        "store_bytes": size,
        "device_read_bytes": device_read_bytes() - dev0,
        "load": load.result(),
        "epoch_rows": spec.rows,
    }


def read(
    adapter: Adapter, work: Path, tool: str, kind: str, measure: str, args: argparse.Namespace
) -> dict[str, Any]:
    from bale.loader.quality import dispersion_ratio

    spec = data.load_spec(work / "data", kind)
    out_dir = store_dir(work, tool, kind)
    files = adapter.files(out_dir)
    size, _ = disk_usage(files)
    if args.cache == "cold":
        evict(files)
    else:
        read_through(files)
    resident = resident_bytes(files)
    gc.collect()
    load = ForeignLoad()
    dev0 = device_read_bytes()
    t0 = time.perf_counter()
    adapter.open(out_dir, spec)
    open_s = time.perf_counter() - t0
    result: dict[str, Any] = {"open_s": open_s, "resident_before": resident, "store_bytes": size}
    batch = BATCH[kind]
    try:
        if measure == "seq":
            result.update(_epoch(adapter.iter_sequential(batch), args.cap_s, batch, False))
        elif measure == "shuf":
            epoch = _epoch(adapter.iter_shuffled(batch, SEED, 0), args.cap_s, batch, True)
            labels = epoch.pop("label_batches")
            all_labels = data.load_labels(work / "data", kind)
            shares = np.bincount(all_labels) / len(all_labels)
            result.update(epoch)
            result["batches_scored"] = len(labels)
            result["dispersion_ratio"] = dispersion_ratio(labels, shares) if labels else None
        elif measure == "row":
            result.update(_row_latency(adapter, spec.rows, args.row_n, args.cap_s))
        elif measure == "decode":
            if not spec.is_bytes:
                raise Unsupported("decode is measured on JPEGs only")
            result.update(_decode_epoch(adapter.iter_shuffled(batch, SEED, 0), args.cap_s))
        else:
            raise ValueError(f"unknown measure {measure!r}; expected one of {MEASURES}")
    finally:
        adapter.close()
    result["device_read_bytes"] = device_read_bytes() - dev0
    result["load"] = load.result()
    if "rows" in result and result["seconds"] > 0:
        result["rows_per_s"] = result["rows"] / result["seconds"]
    result["epoch_rows"] = spec.rows
    return result


def run_one(args: argparse.Namespace, measure: str) -> dict[str, Any]:
    record: dict[str, Any] = {
        "tool": args.tool,
        "kind": args.kind,
        "measure": measure,
        "cache": args.cache if measure in READS else None,
    }
    try:
        adapter = adapters.load(args.tool)
        if measure == "gather64":
            batches = args.gather_warm if args.cache == "warm" else args.gather_cold
            record.update(
                gather_latency(args.tool, args.work, args.kind, args.cache, batches, args.cap_s)
            )
        elif measure == "probe":
            record.update(probe(adapter))
        elif measure == "write":
            record.update(write(adapter, args.work, args.tool, args.kind))
        elif measure == "verify":
            record.update(verify(adapter, args.work, args.tool, args.kind))
        else:
            record.update(read(adapter, args.work, args.tool, args.kind, measure, args))
        record["ok"] = True
    except Unsupported as exc:
        record.update(ok=False, unsupported=True, error=str(exc))
    except Exception as exc:  # recorded, not raised: one tool's failure must not stop the suite
        record.update(ok=False, error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc())
    record["bale_digest"] = src_digest()  # which bale source this process measured
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("tool", choices=sorted(adapters.TOOLS))
    parser.add_argument("kind", choices=data.KINDS)
    parser.add_argument(
        "measures",
        help=f"one of {MEASURES}, or several comma-separated: run one after the other in this "
        "process (quick mode), each with a fresh adapter and its own cache preparation",
    )
    parser.add_argument("--cache", choices=("warm", "cold"), default="warm")
    parser.add_argument("--cap-s", type=float, default=30.0, help="stop an epoch after this")
    parser.add_argument("--row-n", type=int, default=500, help="random rows per latency run")
    parser.add_argument("--gather-warm", type=int, default=200, help="gather64 batches, warm")
    parser.add_argument("--gather-cold", type=int, default=30, help="gather64 batches, cold")
    args = parser.parse_args(argv)
    measures = args.measures.split(",")
    for m in measures:
        if m not in MEASURES:
            parser.error(f"unknown measure {m!r}; expected one of {MEASURES}")
    for measure in measures:
        record = run_one(args, measure)
        record["shared_process"] = len(measures) > 1
        sys.stdout.write("\nRESULT " + json.dumps(record) + "\n")
        sys.stdout.flush()
    # Some tools leave non-daemon threads behind (prefetchers, shared-memory monitors); the
    # results are out, so do not wait for them at interpreter shutdown.
    os._exit(0)


if __name__ == "__main__":
    main()
