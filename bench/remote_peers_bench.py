"""bale and its peers (WebDataset, MosaicML Streaming, LitData) reading the same rows through
their own remote paths from one loopback server with a per-request delay: samples/s side by side.

    .venv-bench/bin/python -m bench.remote_peers_bench            # full run, ~20 minutes on 2 cores
    .venv-bench/bin/python -m bench.remote_peers_bench --quick    # small data, a few minutes

Each of the suite's three kinds (bench/suite/data.py, the suite's full or quick row counts) is
written once in each tool's format by the comparative suite's own adapters (bench/suite/adapters:
bale defaults, WebDataset tar shards, MDS shards, LitData chunks), under one directory that
bench.remote_server.DirectoryServer serves from a child process on 127.0.0.1: plain HTTP with
single ``Range`` GETs, and the same files as a path-style S3 endpoint (GetObject, HeadObject,
ListObjectsV2; signatures not checked), with the same delay before every answer for every tool.
Each tool reads through the remote path its documentation gives:

- **bale**: ``bale.Loader("http://.../data.bale")`` (obstore, ranged GETs of row groups, with
  the Loader's read-ahead), and the same over ``s3://`` with ``storage_options`` naming the
  endpoint;
- **WebDataset**: ``wds.WebDataset(["http://.../shard-000000.tar", ...])``, which pipes each
  shard through ``curl`` (webdataset's gopen for http), one whole-shard GET per shard;
- **MosaicML Streaming**: ``StreamingDataset(remote="s3://bench/...", local=<empty dir>)`` with
  ``S3_ENDPOINT_URL`` set (its documented way to name an S3-compatible endpoint; its downloaders
  have no http(s) scheme), boto3 downloading whole shards into the local cache. The boto3 client
  that fetched index.json in the main process is dropped before the DataLoader workers fork
  (``stream._downloader.clean_up()``): as shipped, the forked workers share its keep-alive
  socket and read each other's answers. A last section checks epochs as shipped;
- **LitData**: ``StreamingDataset("s3://bench/...", cache_dir=<empty dir>,
  storage_options={"endpoint_url": ...})``. As installed here (with obstore, which bale needs)
  its chunk downloads go through obstore, whose client it builds without ``allow_http``: that row
  reports the error it gives. The row "boto3 (obstore off)" is LitData's path where obstore is
  not installed (its ``_OBSTORE_AVAILABLE`` flag set false in this process): boto3 for the
  index and the chunks.

Every tool reads with its own recommended shuffle and workers, as in the suite (bale
``shuffle="chunks"`` with 2 threads; WebDataset shard shuffle + a 1,000-sample buffer, Streaming
py1e, LitData chunk + item shuffle, each through 2 DataLoader worker processes), at the suite's
batch sizes (jpeg 64, uint8 and act 256). The shuffles are not the same algorithm, so an epoch
of each is "one epoch of what a user of that tool gets", not an identical access pattern. A
remote epoch starts from an empty cache (a fresh local directory for Streaming and LitData, so
the shards are downloaded inside the timed epoch) and is timed from creating the iterator to its
last batch (DataLoader workers started, index fetched: what the epoch costs). The baseline is
the same tool's epoch from its local files, page cache warm, in the same round. Before timing,
one epoch of each tool over the server is checked against the source rows (an order-free digest
of every row's x bytes and label). Rounds go kind by kind, tool by tool, delay by delay, so a
burst of load from elsewhere hits all tools alike. Medians (min-max) of the rounds; the ratio to
bale is taken per round (peer samples/s / bale-over-HTTP samples/s at the same delay), then its
median. "requests" and "fetched / store" are counted by the server over one epoch.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import read_through, report_head, stamp
from bench.remote_server import DirectoryServer
from bench.results import OUT, write_report
from bench.stats import fmt_range, summary
from bench.suite import data
from bench.suite.adapters.bale_file import THREADS, BaleFile
from bench.suite.adapters.base import Adapter, Batch, files_under
from bench.suite.adapters.litdata_chunks import LitDataChunks
from bench.suite.adapters.mosaic_streaming import MosaicStreaming, _streaming
from bench.suite.adapters.webdataset_tar import WebDatasetTar

WORK = OUT / "remote_peers"
BUCKET = "bench"
SEED = 0
#: the comparative suite's batch sizes (bench/suite/measure.py)
BATCH = {"jpeg": 64, "uint8": 256, "act": 256}
ROWS = {"jpeg": 2000, "uint8": 16_000, "act": 4000}
QUICK_ROWS = {"jpeg": 300, "uint8": 3000, "act": 1000}
#: tool -> the suite adapter that writes its store (and reads it locally)
WRITERS: dict[str, type[Adapter]] = {
    "bale": BaleFile,
    "webdataset": WebDatasetTar,
    "streaming": MosaicStreaming,
    "litdata": LitDataChunks,
}
#: the rows of a table: (label, the tool whose store it reads, how it reads remotely)
READERS = (
    ("bale http", "bale", "http"),
    ("bale s3", "bale", "s3"),
    ("WebDataset http (curl)", "webdataset", "http"),
    ("MosaicML Streaming s3 (client per worker)", "streaming", "s3"),
    ("LitData s3", "litdata", "s3"),
    ("LitData s3, boto3 (obstore off)", "litdata", "s3"),
)
BASELINE = "bale http"
KEY, SECRET, REGION = "bench", "bench-secret", "us-east-1"


# -- each tool's remote path, as a subclass of the suite's adapter ---------------------------------


class RemoteBale(BaleFile):
    """bale.Loader over a URL (http or s3 with ``storage_options``)."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None) -> None:
        super().__init__()
        self.url = url
        self.storage_options = storage_options

    def _loader(self, batch_size: int, shuffle: Any, seed: int, epoch: int) -> Iterator[Batch]:
        import bale

        with bale.Loader(
            self.url,
            batch_size,
            shuffle=shuffle,
            seed=seed,
            num_threads=THREADS,
            storage_options=self.storage_options,
        ) as loader:
            loader.set_epoch(epoch)
            for b in loader:
                yield b["x"], b["label"]


class RemoteWebDataset(WebDatasetTar):
    """The suite's WebDataset pipeline, its shard list replaced by http URLs (curl)."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    def open(self, out: Path, spec: data.Spec) -> None:
        super().open(out, spec)
        self.urls = [f"{self.base_url}/{Path(p).name}" for p in self.urls]


class RemoteStreaming(MosaicStreaming):
    """StreamingDataset(remote=s3://..., local=an empty directory) through the suite's loader."""

    def __init__(self, remote: str, cache: Path, drop_client: bool = True) -> None:
        super().__init__()
        self.remote = remote
        self.cache = cache
        self.drop_client = drop_client

    def _dataset(self, batch_size: int, shuffle: bool, seed: int) -> Any:
        streaming = _streaming()
        from streaming.base.util import clean_stale_shared_memory

        clean_stale_shared_memory()
        dataset = streaming.StreamingDataset(
            remote=self.remote,
            local=str(fresh_dir(self.cache)),
            shuffle=shuffle,
            shuffle_seed=seed,
            batch_size=batch_size,
        )
        if self.drop_client:
            # The S3 client that fetched index.json here holds a keep-alive connection; forked
            # DataLoader workers would inherit it and share one socket (answers crossed).
            for stream in dataset.streams:
                stream._downloader.clean_up()
        return dataset


class RemoteLitData(LitDataChunks):
    """litdata.StreamingDataset("s3://...", cache_dir=an empty directory, storage_options);
    with ``obstore=False`` its chunk downloads take the boto3 path it takes where obstore is not
    installed (obstore is here, for bale)."""

    def __init__(self, remote: str, cache: Path, options: dict[str, Any], obstore: bool) -> None:
        super().__init__()
        self.remote = remote
        self.cache = cache
        self.storage_options = options
        self.obstore = obstore

    def _dataset(self, shuffle: bool, seed: int) -> Any:
        import litdata

        return litdata.StreamingDataset(
            self.remote,
            cache_dir=str(fresh_dir(self.cache)),
            shuffle=shuffle,
            seed=seed,
            storage_options=self.storage_options,
        )

    def _iter(self, batch_size: int, shuffle: bool, seed: int, epoch: int) -> Iterator[Batch]:
        import litdata.streaming.downloader as downloader

        available = downloader._OBSTORE_AVAILABLE
        if not self.obstore:
            # set before the DataLoader workers fork, so that it holds in them too
            downloader._OBSTORE_AVAILABLE = False
        try:
            yield from super()._iter(batch_size, shuffle, seed, epoch)
        finally:
            downloader._OBSTORE_AVAILABLE = available

    def probe(self) -> None:
        """Read the first row in a fresh spawned process without workers: where the default
        path fails, its own error comes back at once (in DataLoader workers it surfaces only
        as a 120 s ChunkWaitTimeoutError), and this process starts no runtime of LitData's."""
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(1) as pool:
            error = pool.apply(
                _litdata_first_row, (self.remote, str(self.cache), self.storage_options)
            )
        if error:
            raise ProbeFailed(error)


class ProbeFailed(RuntimeError):
    """A reader's own error, already formatted in the process that met it."""


def _litdata_first_row(remote: str, cache: str, options: dict[str, Any]) -> str:
    import litdata

    try:
        shutil.rmtree(cache, ignore_errors=True)
        next(iter(litdata.StreamingDataset(remote, cache_dir=cache, storage_options=options)))
    except Exception as exc:
        return short_error(exc)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return ""


def fresh_dir(parent: Path) -> Path:
    """An empty directory under ``parent`` (whatever was there before is removed)."""
    shutil.rmtree(parent, ignore_errors=True)
    parent.mkdir(parents=True)
    return Path(
        os.path.join(parent, f"c{time.monotonic_ns()}")
    )  # not created: Streaming wants to create local itself


def s3_environment(endpoint: str) -> None:
    """Name the loopback endpoint and dummy credentials the usual way (environment variables),
    before any DataLoader worker is forked: boto3 reads the AWS_* ones, MosaicML Streaming reads
    ``S3_ENDPOINT_URL``, obstore (LitData's chunk downloads) reads ``AWS_ALLOW_HTTP``."""
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ALLOW_HTTP": "true",
            "S3_ENDPOINT_URL": endpoint,
            "HF_HUB_OFFLINE": "1",
        }
    )


def remote_reader(label: str, kind: str, server: DirectoryServer) -> Adapter:
    """The adapter that reads ``kind`` through ``label``'s remote path from ``server``."""
    tool = next(t for name, t, _ in READERS if name == label)
    key = f"{BUCKET}/{kind}/{tool}"
    http = f"{server.endpoint}/{key}"
    cache = WORK / "cache" / tool
    if label == "bale http":
        return RemoteBale(f"{http}/data.bale", None)
    if label == "bale s3":
        options = {
            "key": KEY,
            "secret": SECRET,
            "endpoint_url": server.endpoint,
            "client_kwargs": {"region_name": REGION},
        }
        return RemoteBale(f"s3://{key}/data.bale", options)
    if label.startswith("WebDataset"):
        return RemoteWebDataset(http)
    if label.startswith("MosaicML"):
        return RemoteStreaming(f"s3://{key}", cache)
    options = {
        "endpoint_url": server.endpoint,
        "aws_access_key_id": KEY,
        "aws_secret_access_key": SECRET,
        "region_name": REGION,
    }
    return RemoteLitData(f"s3://{key}", cache, options, obstore="obstore off" not in label)


# -- reading --------------------------------------------------------------------------------------


def row_digest(x: Any, label: int) -> int:
    raw = bytes(x) if isinstance(x, (bytes, bytearray, memoryview)) else np.asarray(x).tobytes()
    h = hashlib.blake2b(raw, digest_size=8)
    h.update(int(label).to_bytes(8, "little", signed=True))
    return int.from_bytes(h.digest(), "little")


def source_digest(source: data.Source) -> tuple[int, int]:
    """(rows, sum of row digests mod 2^64): equal for any order of the same rows."""
    total = 0
    for i in range(len(source)):
        x, label = source.row(i)
        total = (total + row_digest(x, label)) % (1 << 64)
    return len(source), total


def checked_epoch(reader: Adapter, kind: str) -> tuple[int, int]:
    rows, total = 0, 0
    for x, labels in reader.iter_shuffled(BATCH[kind], SEED, 0):
        for xi, yi in zip(x, labels, strict=True):
            total = (total + row_digest(xi, int(yi))) % (1 << 64)
            rows += 1
    return rows, total


def timed_epoch(reader: Adapter, kind: str, epoch: int) -> tuple[float, int]:
    """Seconds and rows of one shuffled epoch, from creating the iterator to its last batch."""
    t0 = time.perf_counter()
    batches = reader.iter_shuffled(BATCH[kind], SEED, epoch)
    rows = 0
    try:
        for _, labels in batches:
            rows += len(labels)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
    return time.perf_counter() - t0, rows


def short_error(exc: BaseException) -> str:
    """The exception's type and message, and the innermost frame that raised it."""
    if isinstance(exc, ProbeFailed):
        return str(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return (text[:1500] + "...") if len(text) > 1500 else text + where


# -- the run --------------------------------------------------------------------------------------


def write_stores(kind: str, rows: int) -> tuple[data.Source, dict[str, Any]]:
    """Each tool's store of ``kind`` under WORK/serve/bench/<kind>/<tool>/ (written once)."""
    data.prepare(WORK / "data", kind, rows)
    source = data.load(WORK / "data", kind)
    stores: dict[str, Any] = {}
    for tool, writer in WRITERS.items():
        out = WORK / "serve" / BUCKET / kind / tool
        done = out / ".written"
        adapter = writer()
        try:
            adapter.check()
            if not (done.exists() and done.read_text() == str(rows)):
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                t0 = time.perf_counter()
                adapter.write(source, out)
                print(f"  wrote {kind}/{tool} in {time.perf_counter() - t0:.1f} s", flush=True)
                done.write_text(str(rows))
            files = [p for p in files_under(out) if p.name != ".written"]
            read_through(files)
            stores[tool] = {
                "files": len(files),
                "bytes": sum(p.stat().st_size for p in files),
                "dir": out,
            }
        except Exception as exc:  # a tool that cannot write is reported, not fatal
            stores[tool] = {"error": short_error(exc)}
            print(f"  {kind}/{tool}: cannot write: {stores[tool]['error']}", flush=True)
    return source, stores


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "serve" / BUCKET).mkdir(parents=True, exist_ok=True)
    rows = QUICK_ROWS if cfg.quick else ROWS
    results: dict[str, Any] = {"delays_ms": cfg.delays, "repeats": cfg.repeats, "kinds": {}}
    with DirectoryServer(WORK / "serve") as server:
        s3_environment(server.endpoint)
        for kind in cfg.kinds:
            print(f"{kind}:", flush=True)
            source, stores = write_stores(kind, rows[kind])
            results["kinds"][kind] = measure_kind(kind, source, stores, server, cfg)
            results["kinds"][kind]["stores"] = {
                tool: {k: v for k, v in s.items() if k != "dir"} for tool, s in stores.items()
            }
            if "as_shipped" not in results and "error" not in stores["streaming"]:
                results["as_shipped"] = streaming_as_shipped(
                    kind, source, server, max(cfg.delays), 1 if cfg.quick else 3
                )
    shutil.rmtree(WORK / "cache", ignore_errors=True)
    return results


def measure_kind(
    kind: str,
    source: data.Source,
    stores: dict[str, Any],
    server: DirectoryServer,
    cfg: argparse.Namespace,
) -> dict[str, Any]:
    spec = source.spec
    want = source_digest(source)
    readers: dict[str, tuple[Adapter, Adapter]] = {}  # label -> (remote, local)
    errors: dict[str, str] = {}
    for label, tool, _ in READERS:
        store = stores[tool]
        if "error" in store:
            errors[label] = f"store not written: {store['error']}"
            continue
        server.set_delay(0.0)
        try:
            local = WRITERS[tool]()
            local.open(store["dir"], spec)
            remote = remote_reader(label, kind, server)
            remote.open(store["dir"], spec)
            if isinstance(remote, RemoteLitData) and remote.obstore:
                remote.probe()
            got = checked_epoch(remote, kind)
            if got != want:
                raise RuntimeError(
                    f"rows read over the server differ from the source: {got[0]} rows, digest "
                    f"{got[1]:x}; expected {want[0]} rows, digest {want[1]:x}"
                )
            readers[label] = (remote, local)
            print(f"  {label}: checked ({got[0]} rows)", flush=True)
        except Exception as exc:
            errors[label] = short_error(exc)
            print(f"  {label}: FAILED {errors[label]}", flush=True)
            if cfg.verbose:
                traceback.print_exc()
    cases: dict[str, dict[str, dict[str, list[float]]]] = {label: {} for label in readers}
    failures: dict[str, list[str]] = {}
    nan = float("nan")
    for repeat in range(cfg.repeats):
        epoch = repeat + 1
        for label, (remote, local) in readers.items():
            tool = next(t for name, t, _ in READERS if name == label)
            case = cases[label]
            if label != "bale s3":  # bale's local epoch is the same for both of its rows
                try:
                    seconds, n = timed_epoch(local, kind, epoch)
                except Exception as exc:
                    failures.setdefault(label, []).append(
                        f"local, round {repeat}: " + short_error(exc)
                    )
                    seconds, n = nan, 0
                case.setdefault("local", {}).setdefault("samples_s", []).append(n / seconds)
            for delay in cfg.delays:
                server.set_delay(delay / 1e3)
                requests, sent = server.requests, server.bytes_sent
                try:
                    seconds, n = timed_epoch(remote, kind, epoch)
                except Exception as exc:
                    failures.setdefault(label, []).append(
                        f"{delay:g} ms, round {repeat}: " + short_error(exc)
                    )
                    seconds, n = nan, 0
                at = case.setdefault(f"{delay:g} ms", {})
                at.setdefault("samples_s", []).append(n / seconds)
                at.setdefault("rows", []).append(n)
                at.setdefault("requests", []).append(server.requests - requests)
                at.setdefault("fetched_ratio", []).append(
                    (server.bytes_sent - sent) / stores[tool]["bytes"]
                )
            server.set_delay(0.0)
            shutil.rmtree(WORK / "cache" / tool, ignore_errors=True)
        print(
            f"  [{repeat}] "
            + "; ".join(
                f"{label} "
                + ", ".join(f"{name} {c['samples_s'][-1]:,.0f}" for name, c in cases[label].items())
                for label in readers
            ),
            flush=True,
        )
    # ratios to bale over http, round by round (nan where either epoch failed)
    if BASELINE in cases:
        for case in cases.values():
            for name, at in case.items():
                base = cases[BASELINE].get(name) or cases[BASELINE]["local"]
                at["vs_bale"] = [
                    a / b for a, b in zip(at["samples_s"], base["samples_s"], strict=True)
                ]
                own = case.get("local") or cases[BASELINE]["local"]  # bale s3: bale's own
                if name != "local":
                    at["vs_own_local"] = [
                        a / b for a, b in zip(at["samples_s"], own["samples_s"], strict=True)
                    ]
    return {
        "rows": spec.rows,
        "batch": BATCH[kind],
        "errors": errors,
        "failures": failures,
        "cases": {
            label: {name: summaries(at) for name, at in case.items()}
            for label, case in cases.items()
        },
    }


def summaries(values: dict[str, list[float]]) -> dict[str, Any]:
    """Each measure's summary over the rounds that did not fail (None when all failed)."""
    out: dict[str, Any] = {}
    for key, v in values.items():
        kept = [x for x in v if x == x]  # nan != nan
        out[key] = summary(kept) if kept else None
    return out


def streaming_as_shipped(
    kind: str, source: data.Source, server: DirectoryServer, delay_ms: float, epochs: int
) -> dict[str, Any]:
    """Streaming's epochs without dropping the parent's S3 client, each checked against the
    source: what a user gets from ``StreamingDataset(remote="s3://...")`` in a DataLoader with
    forked workers, against a server that keeps connections alive (as S3 does)."""
    store = WORK / "serve" / BUCKET / kind / "streaming"
    reader = RemoteStreaming(f"s3://{BUCKET}/{kind}/streaming", WORK / "cache" / "streaming", False)
    reader.open(store, source.spec)
    want = source_digest(source)
    outcomes = []
    server.set_delay(delay_ms / 1e3)
    try:
        for _ in range(epochs):
            t0 = time.perf_counter()
            try:
                got = checked_epoch(reader, kind)
                outcome = (
                    "right rows"
                    if got == want
                    else f"WRONG ROWS: {got[0]} rows, digest {got[1]:x} (expected {want[1]:x})"
                )
            except Exception as exc:
                outcome = short_error(exc)
            outcomes.append({"seconds": time.perf_counter() - t0, "outcome": outcome})
            print(f"  Streaming as shipped: {outcomes[-1]['seconds']:.1f} s, {outcome[:200]}")
    finally:
        server.set_delay(0.0)
        shutil.rmtree(WORK / "cache" / "streaming", ignore_errors=True)
    return {"kind": kind, "delay_ms": delay_ms, "epochs": outcomes}


# -- the report -----------------------------------------------------------------------------------


def report(results: dict[str, Any]) -> str:
    lines = [
        *report_head(
            "bale and its peers over their own remote paths, from one loopback server",
            results,
            __doc__,
        ),
        f"{results['repeats']} rounds; median (min-max). Load average at the start "
        f"{results['env']['loadavg_start'][0]:.1f}, at the end {results['loadavg_end'][0]:.1f}. "
        + (results.get("note") or ""),
        "",
    ]
    lines += summary_table(results)
    for kind, k in results["kinds"].items():
        lines += [
            f"## {kind}: {data.DESCRIPTIONS[kind]}",
            "",
            f"{k['rows']:,} rows, batch {k['batch']}. Stores: "
            + ", ".join(
                f"{tool} {s['bytes'] / 1e6:.1f} MB in {s['files']} files"
                if "bytes" in s
                else f"{tool}: not written"
                for tool, s in k["stores"].items()
            )
            + ".",
            "",
            "| reader | where | samples/s | vs bale (same delay) | vs own local | requests "
            "| fetched / store |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for label, case in k["cases"].items():
            for name, at in case.items():
                where = "local files" if name == "local" else f"server, {name}"
                cells = [fmt(at.get(key), d) for key, d in SHOWN]
                lines.append(f"| {label} | {where} | " + " | ".join(cells) + " |")
        for label in k["errors"]:
            lines.append(f"| {label} | - | failed: see below | - | - | - | - |")
        if k["errors"]:
            lines += ["", "Readers that could not read from the server (or from their store):", ""]
            lines += [f"- **{label}**: `{error}`" for label, error in k["errors"].items()]
        if k.get("failures"):
            lines += ["", "Epochs that failed (left out of the medians):", ""]
            lines += [
                f"- **{label}**, {failure}"
                for label, failed in k["failures"].items()
                for failure in failed
            ]
        lines.append("")
    shipped = results.get("as_shipped")
    if shipped:
        lines += [
            "## MosaicML Streaming as shipped: forked workers share the parent's S3 connection",
            "",
            '`StreamingDataset(remote="s3://...")` fetches index.json in the main process '
            "with a boto3 client that keeps its connection open; DataLoader workers forked "
            "afterwards inherit that client and send their ranged GETs down the same socket, so "
            "each can read the other's answer (same length, other bytes) or wait for one that "
            "went to the other (boto3's 60 s read timeout). The rows above drop that client "
            "before the workers fork (`stream._downloader.clean_up()` on each stream, one line "
            "a user can add). Without it, checked epochs of the "
            f"{shipped['kind']} store at {shipped['delay_ms']:g} ms a request:",
            "",
            "| epoch | seconds | outcome |",
            "|---:|---:|---|",
        ]
        lines += [
            f"| {i} | {e['seconds']:.1f} | `{e['outcome'][:400]}` |"
            for i, e in enumerate(shipped["epochs"])
        ]
        lines.append("")
    return "\n".join(lines) + "\n"


def summary_table(results: dict[str, Any]) -> list[str]:
    """Median samples/s of every reader, side by side: one row per kind and place read from."""
    labels = [label for label, _, _ in READERS]
    lines = [
        "## Side by side: median samples/s (x bale over HTTP at the same place)",
        "",
        "| kind | read from | " + " | ".join(labels) + " |",
        "|---|---|" + "---:|" * len(labels),
    ]
    for kind, k in results["kinds"].items():
        places = ["local", *(f"{d:g} ms" for d in results["delays_ms"])]
        for place in places:
            cells = []
            for label in labels:
                at = k["cases"].get(label, {}).get(place)
                if label in k["errors"]:
                    cells.append("failed")
                elif at is None or at.get("samples_s") is None:
                    cells.append("-")
                else:
                    ratio = at.get("vs_bale")
                    tail = f" ({ratio['median']:.2f}x)" if ratio and label != BASELINE else ""
                    cells.append(f"{at['samples_s']['median']:,.0f}{tail}")
            where = "local files" if place == "local" else f"server, {place}"
            lines.append(f"| {kind} | {where} | " + " | ".join(cells) + " |")
    return [*lines, ""]


#: the table's measures and their digits
SHOWN = (
    ("samples_s", 0),
    ("vs_bale", 2),
    ("vs_own_local", 2),
    ("requests", -1),
    ("fetched_ratio", 2),
)


def fmt(s: dict[str, float] | None, digits: int) -> str:
    """A summary as ``median (min-max)``, ``-`` when not measured, a plain median for
    counts (``digits`` -1)."""
    if s is None:
        return "-"
    if digits < 0:
        return f"{s['median']:.0f}"
    return fmt_range(s, digits)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="small data, delays 0 and 20 ms, 1 round"
    )
    parser.add_argument(
        "--delays", help="per-request delays in ms, comma-separated (default 0,20,50)"
    )
    parser.add_argument("--repeats", type=int, help="rounds (default 3; quick 1)")
    parser.add_argument("--kinds", default=",".join(data.KINDS), help="data kinds to measure")
    parser.add_argument("--note", default="", help="a sentence for the report (e.g. load)")
    parser.add_argument("--verbose", action="store_true", help="print failures' tracebacks")
    cfg = parser.parse_args()
    cfg.kinds = cfg.kinds.split(",")
    cfg.repeats = cfg.repeats or (1 if cfg.quick else 3)
    default_delays = "0,20" if cfg.quick else "0,20,50"
    cfg.delays = [float(d) for d in (cfg.delays or default_delays).split(",")]
    t0, load_start = time.perf_counter(), os.getloadavg()
    results = run(cfg)
    stamp(
        results,
        WORK,
        ("numpy", "obstore", "webdataset", "mosaicml-streaming", "litdata", "boto3"),
        f"{Path(sys.executable).parent.parent.name}/bin/python -m bench.remote_peers_bench"
        + (" --quick" if cfg.quick else ""),
    )
    results["env"]["loadavg_start"] = load_start
    results["loadavg_end"] = os.getloadavg()
    results["note"] = cfg.note
    results["total_seconds"] = time.perf_counter() - t0
    written = write_report("remote_peers_bench", results, report(results), quick=cfg.quick)
    print(f"wrote {written}")


if __name__ == "__main__":
    main()
