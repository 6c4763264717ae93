"""Loader benchmark: bale.Loader against the ways people feed training loops today.

Four questions, each answered in one process so that ratios are taken under the same load:

1. JPEGs (~375x500, real photos from ``bench/photo_data.py``): how close does ``bale.Loader`` with
   ``DecodeImages`` come to the decode-only ceiling (the same bytes already in memory, decoded by
   the same transform in a thread pool), and how does it compare with a torch ``DataLoader`` over
   a folder of JPEG files, an h5py file and a NumPy memmap? Images/s, at 224x224 and at 64x64.
2. Decoded arrays (64x64x3 uint8 images, float32 sparse activations): MB/s of decoded data that
   ``bale.Loader`` delivers, shuffled and sequential, against a memmapped ``.npy`` (random batches
   with ``np.take``, and slices) and chunked h5py (gzip-4, lzf) read with sorted index batches.
3. Cold page cache: a chunk-shuffled bale epoch against a sequential one.
4. Memory: peak RSS of a fresh process iterating a ``bale.Loader`` over a file larger than its
   ``memory_budget``.

Every timing is the median (min-max) of repeats, run round-robin over the methods, warm (the
files in the page cache) and cold (``os.sync()`` + ``posix_fadvise(DONTNEED)`` of every file
involved, checked with ``fincore`` and getrusage read counts). Results go to
``bench/results/loader_bench.json`` and ``.md``; each aim is judged PASS or MISS as measured.

    .venv/bin/python -m bench.loader_bench           # full run, about 10 minutes
    .venv/bin/python -m bench.loader_bench --quick   # smaller data, 1-2 minutes

Units: 1 MB = 10^6 bytes; MiB = 2^20 bytes.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

import bale
from bale.images import DecodeImages
from bale.loader.order import ShuffleMode
from bench import photo_data
from bench.machine import (
    ForeignLoad,
    describe,
    device_read_bytes,
    evict,
    exit_on_sigterm,
    machine_section,
    proc_io,
    read_through,
    reset_peak_rss,
    resident_bytes,
    src_digest,
    vm_status,
)
from bench.results import OUT, ROOT, write_report
from bench.stats import Verdict, aims_section, fmt_range, print_aims, summary

# Everything written there (git-ignored) is deleted at the end.
WORK = OUT / "loader_bench"
MB = 1e6
MiB = 1 << 20
THREADS = 2  # the core count of the benchmark machine: bale threads = DataLoader workers
JPEG_BATCH = 64
ARRAY_BATCH = 256
DECODE_SIZES: dict[str, tuple[int, int]] = {"224x224": (224, 224), "64x64": (64, 64)}
Batch = dict[str, Any]
Epoch = Callable[[], Iterator[int]]  # one epoch; yields units (images or bytes) per batch

# Aims (from the project brief).
AIM_OVERHEAD = 0.10  # bale.Loader + DecodeImages within 10% of the decode-only ceiling
AIM_VS_DATALOADER = 2.0  # bale >= 2x the best DataLoader pipeline on JPEGs
AIM_COLD_SHUFFLE = 0.80  # cold chunk-shuffled epoch >= 80% of a cold sequential one
# Average cores used by other processes above which a section's timings count as disturbed.
FOREIGN_WARN_CORES = 0.1


@dataclass(frozen=True)
class Config:
    quick: bool
    n_jpeg: int
    n_uint8: int
    n_act: int
    repeats: int
    h5_shuffled_seconds: float  # h5py random batches are slow: each run stops after this long
    rss_copies: int  # the RSS file holds the uint8 images this many times over
    budgets_mib: tuple[int, ...]

    @classmethod
    def make(cls, quick: bool) -> Config:
        if quick:
            return cls(True, 300, 4000, 1500, 3, 0.5, 6, (64, 256))
        # ~94 MB of JPEGs, ~295 MB of images, ~295 MB of activations, a ~1.5 GB RSS file.
        return cls(False, 2000, 24_000, 9_000, 5, 2.0, 5, (64, 256, 1024))


# -- measurement helpers ----------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One timed epoch (or the first part of one, for capped runs)."""

    seconds: float
    first_batch_s: float
    units: int
    device_bytes: int
    resident_after_evict: int | None

    @property
    def rate(self) -> float:
        return self.units / self.seconds


def timed(epoch: Epoch, evict_paths: Sequence[Path] | None) -> Run:
    """Run one epoch; with ``evict_paths``, from a cold page cache."""
    resident = None
    if evict_paths is not None:
        # bale Loaders kept open map their uncompressed files, and mapped pages cannot be
        # evicted: every open Loader (other methods read the same files) lets go first.
        for loader in list(BaleEpochs.open_loaders):
            loader.evict_from_page_cache()
        evict(evict_paths)
        resident = resident_bytes(evict_paths)
    gc.collect()
    dev0 = device_read_bytes()
    t0 = time.perf_counter()
    first = 0.0
    units = 0
    for n in epoch():
        if not units:
            first = time.perf_counter() - t0
        units += n
    seconds = time.perf_counter() - t0
    return Run(seconds, first, units, device_read_bytes() - dev0, resident)


@dataclass
class Method:
    """A way of reading one epoch, the files it reads, and how many units an epoch holds."""

    name: str
    epoch: Epoch
    files: list[Path]
    total_units: int
    cold: bool = True  # False for in-memory baselines
    capped: bool = False  # stops after a time limit rather than at the end of the epoch
    close: Callable[[], None] | None = None  # releases what the epochs keep open

    @property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files)


def run_methods(methods: list[Method], repeats: int, rate_scale: float) -> dict[str, Any]:
    """Each repeat runs every method warm and then cold, round-robin, so that a burst of load
    from elsewhere on the machine hits every method and both caches alike. Rates are units/s
    times ``rate_scale``."""
    for m in methods:
        warmup = timed(m.epoch, None)  # untimed: first-use costs (imports, caches) go here
        if not m.capped and warmup.units != m.total_units:
            raise AssertionError(f"{m.name}: {warmup.units} units, expected {m.total_units}")
    runs: dict[str, dict[str, list[Run]]] = {m.name: {"warm": [], "cold": []} for m in methods}
    for _ in range(repeats):
        for m in methods:
            read_through(m.files)
            runs[m.name]["warm"].append(timed(m.epoch, None))
            if m.cold:
                runs[m.name]["cold"].append(timed(m.epoch, m.files))
    for m in methods:
        if m.close is not None:
            m.close()
    return {m.name: method_result(m, runs[m.name], rate_scale) for m in methods}


def method_result(m: Method, runs: dict[str, list[Run]], scale: float) -> dict[str, Any]:
    out: dict[str, Any] = {"size_bytes": m.size_bytes if m.files else 0, "capped": m.capped}
    for cache, rs in runs.items():
        if not rs:
            continue
        out[cache] = {
            "rate": summary([r.rate * scale for r in rs]),
            "seconds": [r.seconds for r in rs],
            "first_batch_s": summary([r.first_batch_s for r in rs]),
            "units": [r.units for r in rs],
            "epoch_fraction": [r.units / m.total_units for r in rs],
            "device_read_bytes": [r.device_bytes for r in rs],
            "resident_after_evict_bytes": [r.resident_after_evict for r in rs],
        }
    return out


def print_results(title: str, results: dict[str, Any], unit: str) -> None:
    print(f"-- {title}")
    for name, r in results.items():
        cold = f"{r['cold']['rate']['median']:9.0f}" if "cold" in r else "      n/a"
        print(f"{name:34s} warm {r['warm']['rate']['median']:9.0f}  cold {cold} {unit}")


# -- cProfile of the loader's worker threads ----------------------------------------------------


def profile_threads(work: Callable[[], None], top: int = 15) -> list[str]:
    """Top functions by own time over the main thread and every thread started meanwhile.

    cProfile only sees the thread that enables it, and bale does its work in a thread pool, so
    ``threading.setprofile`` installs a hook that enables a fresh profiler in each new thread.
    """
    profilers: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start_in_thread(*_: object) -> None:
        profiler = cProfile.Profile()
        with lock:
            profilers.append(profiler)
        profiler.enable()  # replaces this hook for the rest of the thread's life

    main = cProfile.Profile()
    threading.setprofile(start_in_thread)
    try:
        main.enable()
        work()
        main.disable()
    finally:
        threading.setprofile(None)
    stream = io.StringIO()
    stats = pstats.Stats(main, stream=stream)
    for p in profilers:
        stats.add(p)
    stats.sort_stats("tottime").print_stats(top)
    lines = stream.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    root = str(Path(sys.prefix).parent)  # shorten /work/main/... and site-packages paths
    return [
        line.rstrip().replace(root + "/", "")
        for line in lines[start : start + top + 1]
        if line.strip()
    ]


# -- JPEG pipelines -----------------------------------------------------------------------------


def decode_one(decode: DecodeImages, data: bytes) -> NDArray[np.uint8]:
    """The per-sample path of the DataLoader pipelines: the very same transform, on one row."""
    image: NDArray[np.uint8] = decode({"image": [data]})["image"][0]
    return image


class FolderJpegs(TorchDataset[tuple[NDArray[np.uint8], int]]):
    """One JPEG file per sample, as torchvision's ImageFolder reads them."""

    def __init__(self, paths: list[str], labels: NDArray[np.int64], decode: DecodeImages) -> None:
        self.paths, self.labels, self.decode = paths, labels, decode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[NDArray[np.uint8], int]:
        with open(self.paths[i], "rb") as f:
            data = f.read()
        return decode_one(self.decode, data), int(self.labels[i])


class H5Jpegs(TorchDataset[tuple[NDArray[np.uint8], int]]):
    """JPEG bytes in an h5py vlen dataset. The file is opened lazily in each worker, as the h5py
    docs tell DataLoader users to: an HDF5 handle must not cross a fork."""

    def __init__(self, path: Path, n: int, decode: DecodeImages) -> None:
        self.path, self.n, self.decode = path, n, decode
        self.file: h5py.File | None = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[NDArray[np.uint8], int]:
        if self.file is None:
            self.file = h5py.File(self.path, "r")
        data = self.file["image"][i].tobytes()
        return decode_one(self.decode, data), int(self.file["label"][i])


class NpyJpegs(TorchDataset[tuple[NDArray[np.uint8], int]]):
    """JPEG bytes concatenated in one memmapped .npy, with an offsets array (opened lazily)."""

    def __init__(self, folder: Path, labels: NDArray[np.int64], decode: DecodeImages) -> None:
        self.folder, self.labels, self.decode = folder, labels, decode
        self.blob: NDArray[np.uint8] | None = None
        self.offsets: NDArray[np.int64] = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[NDArray[np.uint8], int]:
        if self.blob is None:
            self.blob = np.load(self.folder / "bytes.npy", mmap_mode="r")
            self.offsets = np.load(self.folder / "offsets.npy")
        data = self.blob[self.offsets[i] : self.offsets[i + 1]].tobytes()
        return decode_one(self.decode, data), int(self.labels[i])


def dataloader_epoch(dataset: TorchDataset[Any], seed: list[int]) -> Epoch:
    """DataLoader(num_workers=2, batch_size=64, shuffle=True), built per epoch. Workers are the
    default non-persistent ones: persistent workers would keep memmapped pages mapped, and
    mapped pages survive posix_fadvise, so cold runs would not be cold. Worker start-up is part
    of every epoch here, as it is for users who keep the default."""

    def epoch() -> Iterator[int]:
        seed[0] += 1
        loader = DataLoader(
            dataset,
            batch_size=JPEG_BATCH,
            shuffle=True,
            num_workers=THREADS,
            generator=torch.Generator().manual_seed(seed[0]),
        )
        for _images, labels in loader:
            yield len(labels)

    return epoch


class BaleEpochs:
    """Epochs of one bale.Loader kept open across epochs, as a training loop keeps it (calling
    set_epoch): its threads and window buffers are made in the untimed warm-up epoch, not in
    every timed one."""

    open_loaders: ClassVar[weakref.WeakSet[bale.Loader]] = weakref.WeakSet()

    def __init__(self, make: Callable[[], bale.Loader], units: Callable[[Batch], int]) -> None:
        self.make, self.units = make, units
        self.loader: bale.Loader | None = None
        self.epoch = 0

    def __call__(self) -> Iterator[int]:
        if self.loader is None:
            self.loader = self.make()
            BaleEpochs.open_loaders.add(self.loader)
        self.epoch += 1
        self.loader.set_epoch(self.epoch)
        for batch in self.loader:
            yield self.units(batch)

    def close(self) -> None:
        if self.loader is not None:
            self.loader.close()
            self.loader = None


def bale_method(name: str, epochs: BaleEpochs, files: list[Path], units: int) -> Method:
    return Method(name, epochs, files, units, close=epochs.close)


def jpeg_units(batch: Batch) -> int:
    torch.from_numpy(batch["image"])  # what a training loop does with it (no copy)
    return len(batch["label"])


def bale_jpeg_epochs(path: Path, decode: DecodeImages) -> BaleEpochs:
    def make() -> bale.Loader:
        return bale.Loader(
            path,
            JPEG_BATCH,
            shuffle="chunks",
            seed=0,
            num_threads=THREADS,
            batch_transform=decode,
        )

    return BaleEpochs(make, jpeg_units)


def ceiling_epoch(jpegs: list[bytes], labels: NDArray[np.int64], decode: DecodeImages) -> Epoch:
    """Decode-only ceiling: the bytes already in memory, decoded by the same transform in a pool
    of THREADS threads over batches of 64. No file, no shuffling, no gathering."""
    batches = [
        {"image": jpegs[a : a + JPEG_BATCH], "label": labels[a : a + JPEG_BATCH]}
        for a in range(0, len(jpegs), JPEG_BATCH)
    ]

    def epoch() -> Iterator[int]:
        with ThreadPoolExecutor(THREADS) as pool:
            for out in pool.map(decode, batches):
                yield len(out["label"])

    return epoch


def write_jpeg_files(jpegs: list[bytes], labels: NDArray[np.int64]) -> dict[str, list[Path]]:
    folder = WORK / "jpeg_folder"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:06d}.jpg" for i in range(len(jpegs))]
    for p, jpeg in zip(paths, jpegs, strict=True):
        p.write_bytes(jpeg)
    bale_path = WORK / "jpeg.bale"
    bale.write(bale_path, {"image": jpegs, "label": labels}, overwrite=True)
    h5_path = WORK / "jpeg.h5"
    with h5py.File(h5_path, "w") as f:
        data = np.empty(len(jpegs), dtype=object)
        for i, row in enumerate(jpegs):
            data[i] = np.frombuffer(row, np.uint8)
        f.create_dataset("image", data=data, dtype=h5py.vlen_dtype(np.uint8))
        f.create_dataset("label", data=labels)
    npy = WORK / "jpeg_npy"
    npy.mkdir(exist_ok=True)
    offsets = np.concatenate([[0], np.cumsum([len(j) for j in jpegs])]).astype(np.int64)
    np.save(npy / "bytes.npy", np.frombuffer(b"".join(jpegs), np.uint8))
    np.save(npy / "offsets.npy", offsets)
    return {
        "folder": paths,
        "bale": [bale_path],
        "h5py": [h5_path],
        "npy": [npy / "bytes.npy", npy / "offsets.npy"],
    }


JPEG_METHODS = {
    "ceiling": "decode-only ceiling (bytes in memory, 2 threads)",
    "bale": "bale.Loader(shuffle='chunks', num_threads=2)",
    "folder": "JPEG folder + DataLoader(num_workers=2)",
    "h5py": "h5py vlen bytes + DataLoader(num_workers=2)",
    "npy": "npy memmap bytes+offsets + DataLoader(num_workers=2)",
}


def jpeg_methods(
    jpegs: list[bytes], labels: NDArray[np.int64], files: dict[str, list[Path]], size: str
) -> list[Method]:
    decode = DecodeImages("image", size=DECODE_SIZES[size])
    n = len(jpegs)
    seed = [0]
    folder = FolderJpegs([str(p) for p in files["folder"]], labels, decode)
    h5 = H5Jpegs(files["h5py"][0], n, decode)
    npy = NpyJpegs(files["npy"][0].parent, labels, decode)
    return [
        Method(JPEG_METHODS["ceiling"], ceiling_epoch(jpegs, labels, decode), [], n, cold=False),
        bale_method(
            JPEG_METHODS["bale"], bale_jpeg_epochs(files["bale"][0], decode), files["bale"], n
        ),
        Method(JPEG_METHODS["folder"], dataloader_epoch(folder, seed), files["folder"], n),
        Method(JPEG_METHODS["h5py"], dataloader_epoch(h5, seed), files["h5py"], n),
        Method(JPEG_METHODS["npy"], dataloader_epoch(npy, seed), files["npy"], n),
    ]


def bench_jpeg(cfg: Config) -> dict[str, Any]:
    print(f"\n== JPEG: {cfg.n_jpeg} images ~375x500")
    jpegs, labels = photo_data.jpeg_images(cfg.n_jpeg, seed=0)
    raw = sum(len(j) for j in jpegs)
    files = write_jpeg_files(jpegs, labels)
    out: dict[str, Any] = {"images": cfg.n_jpeg, "jpeg_bytes": raw, "sizes": {}}
    for size in DECODE_SIZES:
        load = ForeignLoad()
        methods = jpeg_methods(jpegs, labels, files, size)
        results = run_methods(methods, cfg.repeats, rate_scale=1.0)
        print_results(f"decode to {size}", results, "images/s")
        out["sizes"][size] = {"methods": results, "foreign_load": load.result()}
    decode = DecodeImages("image", size=DECODE_SIZES["224x224"])
    out["bale_profile"] = profile_threads(
        lambda: consume_first_epoch(bale_jpeg_epochs(files["bale"][0], decode))
    )
    for paths in files.values():
        for p in paths:
            p.unlink()
    return out


def consume_first_epoch(epochs: BaleEpochs) -> None:
    """One epoch of a new Loader, for the profile: its threads start inside the profiled call
    (threads started earlier would escape the profiler), so it includes first-epoch costs."""
    try:
        for _ in epochs():
            pass
    finally:
        epochs.close()


# -- decoded arrays ----------------------------------------------------------------------------


def bale_array_epochs(path: Path, column: str, shuffle: ShuffleMode) -> BaleEpochs:
    def make() -> bale.Loader:
        return bale.Loader(path, ARRAY_BATCH, shuffle=shuffle, seed=0, num_threads=THREADS)

    return BaleEpochs(make, lambda batch: int(batch[column].nbytes))


def memmap_epoch(path: Path, shuffled: bool, seed: list[int]) -> Epoch:
    """The memmap is opened per epoch and dropped after it: a mapping left open pins its pages
    in the page cache, and cold runs would not be cold."""

    def epoch() -> Iterator[int]:
        seed[0] += 1
        mm = np.load(path, mmap_mode="r")
        n = len(mm)
        order = np.random.default_rng(seed[0]).permutation(n) if shuffled else None
        for a in range(0, n, ARRAY_BATCH):
            if order is not None:
                batch = np.take(mm, order[a : a + ARRAY_BATCH], axis=0)
            else:
                batch = np.array(mm[a : a + ARRAY_BATCH])  # a slice alone reads nothing
            yield int(batch.nbytes)
        del mm

    return epoch


def h5_shuffled_epoch(path: Path, seed: list[int], limit_s: float) -> Epoch:
    """Random batches read as sorted index lists (h5py needs increasing indices), stopping after
    ``limit_s`` seconds: each batch touches most chunks, so a whole epoch takes minutes."""

    def epoch() -> Iterator[int]:
        seed[0] += 1
        t0 = time.perf_counter()
        with h5py.File(path, "r") as f:
            ds = f["data"]
            n = ds.shape[0]
            order = np.random.default_rng(seed[0]).permutation(n)
            for a in range(0, n, ARRAY_BATCH):
                batch = ds[np.sort(order[a : a + ARRAY_BATCH])]
                yield int(batch.nbytes)
                if time.perf_counter() - t0 > limit_s:
                    return

    return epoch


def write_array_files(name: str, data: NDArray[Any]) -> tuple[dict[str, Path], int, str]:
    """bale (defaults), .npy, and h5py chunked like bale's row groups (gzip-4 and lzf)."""
    paths = {
        "bale": WORK / f"{name}.bale",
        "bale_raw": WORK / f"{name}.raw.bale",
        "npy": WORK / f"{name}.npy",
        "gzip": WORK / f"{name}.gzip4.h5",
        "lzf": WORK / f"{name}.lzf.h5",
    }
    bale.write(paths["bale"], {"data": data}, overwrite=True)
    # Uncompressed too: tells whether a gap to the memmap is the codec's or the loader's.
    bale.write(paths["bale_raw"], {"data": data}, overwrite=True, codecs={"data": "none"})
    with bale.open(paths["bale"]) as ds:
        chunk_rows = ds.row_group_sizes[0]
        codec = json.dumps(dict(ds.schema["data"].codec))
    np.save(paths["npy"], data)
    for key, (compression, opts) in {"gzip": ("gzip", 4), "lzf": ("lzf", None)}.items():
        with h5py.File(paths[key], "w") as f:
            f.create_dataset(
                "data",
                data=data,
                chunks=(chunk_rows, *data.shape[1:]),
                compression=compression,
                compression_opts=opts,
            )
    return paths, chunk_rows, codec


ARRAY_METHODS = {
    "bale_chunks": "bale.Loader(shuffle='chunks')",
    "bale_none": "bale.Loader(shuffle='none')",
    "bale_chunks_raw": "bale.Loader(shuffle='chunks'), file without compression",
    "bale_none_raw": "bale.Loader(shuffle='none'), file without compression",
    "npy_shuffled": "npy memmap, np.take of random batches",
    "npy_sequential": "npy memmap, sequential slices",
    "h5_gzip": "h5py gzip-4, sorted random batches",
    "h5_lzf": "h5py lzf, sorted random batches",
}


def array_methods(paths: dict[str, Path], nbytes: int, limit_s: float) -> list[Method]:
    seed = [0]
    return [
        bale_method(
            ARRAY_METHODS["bale_chunks"],
            bale_array_epochs(paths["bale"], "data", "chunks"),
            [paths["bale"]],
            nbytes,
        ),
        bale_method(
            ARRAY_METHODS["bale_none"],
            bale_array_epochs(paths["bale"], "data", "none"),
            [paths["bale"]],
            nbytes,
        ),
        bale_method(
            ARRAY_METHODS["bale_chunks_raw"],
            bale_array_epochs(paths["bale_raw"], "data", "chunks"),
            [paths["bale_raw"]],
            nbytes,
        ),
        bale_method(
            ARRAY_METHODS["bale_none_raw"],
            bale_array_epochs(paths["bale_raw"], "data", "none"),
            [paths["bale_raw"]],
            nbytes,
        ),
        Method(
            ARRAY_METHODS["npy_shuffled"],
            memmap_epoch(paths["npy"], True, seed),
            [paths["npy"]],
            nbytes,
        ),
        Method(
            ARRAY_METHODS["npy_sequential"],
            memmap_epoch(paths["npy"], False, seed),
            [paths["npy"]],
            nbytes,
        ),
        Method(
            ARRAY_METHODS["h5_gzip"],
            h5_shuffled_epoch(paths["gzip"], seed, limit_s),
            [paths["gzip"]],
            nbytes,
            capped=True,
        ),
        Method(
            ARRAY_METHODS["h5_lzf"],
            h5_shuffled_epoch(paths["lzf"], seed, limit_s),
            [paths["lzf"]],
            nbytes,
            capped=True,
        ),
    ]


def bench_array(cfg: Config, name: str, description: str, data: NDArray[Any]) -> dict[str, Any]:
    print(f"\n== {name}: {description}, {data.nbytes / MB:.0f} MB")
    load = ForeignLoad()
    paths, chunk_rows, codec = write_array_files(name, data)
    print(f"bale codec {codec}; {chunk_rows} rows per row group (also the h5py chunk)")
    with bale.Loader(paths["bale"], ARRAY_BATCH, num_threads=THREADS) as loader:
        window = loader.window_groups  # the default window (512 MiB of decoded rows)
    with bale.open(paths["bale"]) as ds:
        groups = ds.num_row_groups
    methods = array_methods(paths, data.nbytes, cfg.h5_shuffled_seconds)
    results = run_methods(methods, cfg.repeats, rate_scale=1 / MB)
    print_results(name, results, "MB/s")
    profile = profile_threads(
        lambda: consume_first_epoch(bale_array_epochs(paths["bale"], "data", "chunks"))
    )
    out = {
        "description": description,
        "rows": len(data),
        "raw_bytes": data.nbytes,
        "rows_per_group": chunk_rows,
        "row_groups": groups,
        "default_window_groups": window,
        "bale_codec": codec,
        "methods": results,
        "bale_profile": profile,
        "foreign_load": load.result(),
    }
    for p in paths.values():
        p.unlink()
    return out


# -- peak RSS -------------------------------------------------------------------------------------


def rss_child(path: str, budget: int) -> None:
    """One epoch of a Loader in this fresh process; prints its peak RSS above the baseline, and
    how many bytes the epoch read from the file (``rchar`` of /proc/self/io over the epoch, all
    threads): the file holds compressed blocks, which bale reads with pread each time it
    decodes one, so bytes read / file size counts how often each row group was read and
    decoded. Above 1, the block cache dropped blocks before their last use."""
    with bale.open(path) as ds:
        groups = ds.num_row_groups
        first_rows = ds.read(slice(0, 2 * ds.row_group_sizes[0]))
        group_bytes = ds.index.blocks["raw_size"].sum() // max(1, groups)
    # The window is part of the order (a function of the data, not of the budget): give each
    # budget a window that fits it, about a third of the budget, as a user would.
    window_groups = max(2, int(budget // 3 // max(1, int(group_bytes))))
    file_bytes = Path(path).stat().st_size
    load_lazy_imports(Path(path).with_suffix(".warmup.bale"), first_rows)
    del first_rows
    gc.collect()
    reset_ok = reset_peak_rss()
    base = vm_status()["VmRSS"]
    read0 = proc_io()["rchar"]
    t0 = time.perf_counter()
    rows = 0
    with bale.Loader(
        path,
        ARRAY_BATCH,
        shuffle="chunks",
        seed=0,
        num_threads=THREADS,
        memory_budget=budget,
        window_groups=window_groups,
    ) as loader:
        window = loader.window_groups
        for batch in loader:
            rows += len(batch["data"])
    seconds = time.perf_counter() - t0
    read = proc_io()["rchar"] - read0
    status = vm_status()
    result = {
        "budget": budget,
        "window_groups": window,
        "row_groups": groups,
        "file_bytes_read": read,
        "reads_per_file": read / file_bytes,
        "rows": rows,
        "seconds": seconds,
        "baseline_rss": base,
        "peak_rss": status["VmHWM"],
        "growth": status["VmHWM"] - base,
        "hwm_reset": reset_ok,
        "src_digest": src_digest(),
    }
    print(json.dumps(result))


def load_lazy_imports(path: Path, rows: Batch) -> None:
    """One epoch of a Loader over a small file of the same kind (two row groups), so that the
    modules bale imports on first use (the loader's, the codec's) are loaded before the
    baseline: neither their memory nor the reading of their files counts as the epoch's."""
    bale.write(path, rows, overwrite=True)
    try:
        with bale.Loader(path, ARRAY_BATCH, shuffle="chunks", num_threads=THREADS) as loader:
            for _ in loader:
                pass
    finally:
        path.unlink()


def write_rss_file(images: NDArray[np.uint8], copies: int) -> Path:
    """A file several times the largest budget, written in pieces so this process does not
    hold it all: the same real-photo images repeated (each row group compresses on its own,
    so repetition does not make it smaller)."""
    path = WORK / "rss.bale"
    with bale.Writer(path, overwrite=True) as writer:
        for _ in range(copies):
            writer.write({"data": images})
    return path


def snapshot_bale() -> Path:
    """Copy bale's package as imported now. The RSS subprocesses import this copy, so every
    section measures the same code even if someone edits src/ while the benchmark runs."""
    target = WORK / "bale_snapshot"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(
        Path(bale.__file__).parent, target / "bale", ignore=shutil.ignore_patterns("__pycache__")
    )
    return target


def bench_rss(cfg: Config, path: Path, snapshot: Path) -> dict[str, Any]:
    size = path.stat().st_size
    with bale.open(path) as ds:
        column = ds["data"]
        raw = int(np.prod(column.shape)) * column.dtype.itemsize
        group_raw = raw // ds.num_row_groups  # decoded bytes of an average row group
    print(f"\n== peak RSS: {raw / MB:.0f} MB raw ({size / MB:.0f} MB file)")
    load = ForeignLoad()
    runs = []
    for mib in cfg.budgets_mib:
        # The snapshot goes first on the child's path, so it imports the copy of bale taken at
        # the start; `-m` from the repository root finds this package.
        python_path = os.pathsep.join(filter(None, [str(snapshot), os.environ.get("PYTHONPATH")]))
        done = subprocess.run(
            [sys.executable, "-m", "bench.loader_bench", "--rss-child", str(path), str(mib * MiB)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": python_path},
        )
        r = json.loads(done.stdout.strip().splitlines()[-1])
        r["budget_mib"] = mib
        runs.append(r)
        print(
            f"budget {mib:5d} MiB: window {r['window_groups']} groups, peak RSS growth "
            f"{r['growth'] / MiB:6.0f} MiB ({r['growth'] / r['budget']:.2f}x budget), "
            f"file read {r['reads_per_file']:.2f} times, "
            f"{raw / r['seconds'] / MB:.0f} MB/s"
        )
    return {
        "raw_bytes": raw,
        "file_bytes": size,
        "group_raw_bytes": group_raw,
        "runs": runs,
        "foreign_load": load.result(),
    }


# -- first touch of new memory ---------------------------------------------------------------


def touch_seconds(nbytes: int) -> float:
    """Seconds to allocate ``nbytes`` and write one byte per page: the page faults a fresh
    buffer (such as a shuffle window) costs before any data is copied into it."""
    t0 = time.perf_counter()
    buffer = np.empty(nbytes, np.uint8)
    buffer[:: os.sysconf("SC_PAGE_SIZE")] = 1
    seconds = time.perf_counter() - t0
    del buffer
    return seconds


def first_touch_probe(repeats: int) -> dict[str, Any]:
    """Fresh memory, plainly and right after evicting a file as large. On this VM the guest
    reports free pages to the host, and touching them again makes the host fault them in: slow.
    Pages just freed by an eviction have not been reported yet, so cold runs that allocate big
    buffers can beat warm ones. Run first, while the machine's free memory is settled."""
    nbytes = 256 * MiB
    path = WORK / "touch_probe.bin"
    chunk = b"\1" * (8 * MiB)  # written in pieces: one big buffer would itself free pages
    with open(path, "wb") as f:
        for _ in range(nbytes // len(chunk)):
            f.write(chunk)
    plain, after_evict = [], []
    for _ in range(repeats):
        time.sleep(5)  # let pages freed by the previous step be reported to the host
        plain.append(touch_seconds(nbytes))
        read_through([path])
        evict([path])
        after_evict.append(touch_seconds(nbytes))
    path.unlink()
    return {
        "bytes": nbytes,
        "plain_s": summary(plain),
        "after_evict_s": summary(after_evict),
    }


# -- aims ---------------------------------------------------------------------------------------


def rate(results: dict[str, Any], key: str, cache: str) -> float:
    value: float = results[key][cache]["rate"]["median"]
    return value


def judge_jpeg(jpeg: dict[str, Any]) -> list[Verdict]:
    verdicts = []
    for size, s in jpeg["sizes"].items():
        m = s["methods"]
        ceiling, b = rate(m, JPEG_METHODS["ceiling"], "warm"), rate(m, JPEG_METHODS["bale"], "warm")
        overhead = 1 - b / ceiling
        verdicts.append(
            Verdict(
                f"JPEG {size}: bale.Loader overhead vs decode-only ceiling < {AIM_OVERHEAD:.0%}",
                overhead < AIM_OVERHEAD,
                f"bale {b:.0f} img/s vs ceiling {ceiling:.0f} img/s: overhead {overhead:.1%}",
            )
        )
        for cache in ("warm", "cold"):
            others = {k: rate(m, JPEG_METHODS[k], cache) for k in ("folder", "h5py", "npy")}
            best = max(others, key=others.__getitem__)
            bc = rate(m, JPEG_METHODS["bale"], cache)
            verdicts.append(
                Verdict(
                    f"JPEG {size} {cache}: bale >= {AIM_VS_DATALOADER:g}x best DataLoader",
                    bc >= AIM_VS_DATALOADER * others[best],
                    f"bale {bc:.0f} img/s = {bc / others[best]:.2f}x {best} "
                    f"({others[best]:.0f} img/s); the decode-only ceiling is "
                    f"{ceiling / others[best]:.2f}x it",
                )
            )
    return verdicts


def judge_arrays(arrays: dict[str, Any]) -> list[Verdict]:
    verdicts = []
    pairs = (
        ("bale_chunks", "npy_shuffled"),
        ("bale_none", "npy_sequential"),
        ("bale_chunks_raw", "npy_shuffled"),
        ("bale_none_raw", "npy_sequential"),
    )
    for name, k in arrays.items():
        m = k["methods"]
        for ours, theirs in pairs:
            b, t = rate(m, ARRAY_METHODS[ours], "warm"), rate(m, ARRAY_METHODS[theirs], "warm")
            verdicts.append(
                Verdict(
                    f"{name} warm: {ARRAY_METHODS[ours]} >= {ARRAY_METHODS[theirs]}",
                    b >= t,
                    f"{b:.0f} MB/s vs {t:.0f} MB/s ({b / t:.2f}x)",
                )
            )
    return verdicts


def judge_cold_shuffle(arrays: dict[str, Any]) -> Verdict:
    m = arrays["uint8_images"]["methods"]
    shuffled = rate(m, ARRAY_METHODS["bale_chunks"], "cold")
    sequential = rate(m, ARRAY_METHODS["bale_none"], "cold")
    return Verdict(
        f"uint8_images cold: shuffle='chunks' >= {AIM_COLD_SHUFFLE:.0%} of shuffle='none'",
        shuffled >= AIM_COLD_SHUFFLE * sequential,
        f"{shuffled:.0f} MB/s vs {sequential:.0f} MB/s ({shuffled / sequential:.0%})",
    )


def judge_rss(rss: dict[str, Any]) -> list[Verdict]:
    return [
        Verdict(
            f"peak RSS growth <= memory_budget {r['budget_mib']} MiB "
            f"(file {rss['raw_bytes'] / MiB:.0f} MiB raw)",
            r["growth"] <= r["budget"],
            f"{r['growth'] / MiB:.0f} MiB = {r['growth'] / r['budget']:.2f}x budget",
        )
        for r in rss["runs"]
    ]


def eviction_failures(results: dict[str, Any]) -> list[str]:
    """Cold runs whose files were not evicted (> 1% resident afterwards) or that read less than
    90% of what they delivered from the device; warm runs that read > 5% from the device."""
    failures = []
    for section, methods in iter_method_groups(results):
        for name, r in methods.items():
            size = r["size_bytes"]
            if not size:
                continue
            for cache in ("warm", "cold"):
                if cache not in r:
                    continue
                c = r[cache]
                for dev, res, frac in zip(
                    c["device_read_bytes"],
                    c["resident_after_evict_bytes"],
                    c["epoch_fraction"],
                    strict=True,
                ):
                    if cache == "warm" and dev > 0.05 * size:
                        failures.append(f"{section} / {name}: warm run read {dev / MB:.1f} MB")
                    if cache == "cold" and (
                        dev < 0.9 * size * min(frac, 1.0) or (res or 0) > 0.01 * size
                    ):
                        failures.append(
                            f"{section} / {name}: cold run read {dev / MB:.1f} MB of "
                            f"{size / MB:.1f} MB, {(res or 0) / MB:.1f} MB resident after evict"
                        )
    return failures


def iter_method_groups(results: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for size, s in results["jpeg"]["sizes"].items():
        yield f"JPEG {size}", s["methods"]
    for name, k in results["arrays"].items():
        yield name, k["methods"]


# -- environment and report -------------------------------------------------------------------


def environment() -> dict[str, Any]:
    packages = ("numpy", "torch", "h5py", "simplejpeg", "pillow", "blosc2", "zstandard")
    env = describe(WORK, packages)
    env["versions"]["hdf5"] = h5py.version.hdf5_version
    return env


def method_rows(methods: dict[str, Any], ref: str | None) -> list[str]:
    """Table rows: warm and cold rate, time to first batch, and the ratio to ``ref`` (warm)."""
    rows = []
    ref_rate = methods[ref]["warm"]["rate"]["median"] if ref else None
    for name, r in methods.items():
        warm = r["warm"]
        cold = fmt_range(r["cold"]["rate"]) if "cold" in r else "n/a"
        cold_first = f"{r['cold']['first_batch_s']['median']:.2f}" if "cold" in r else "n/a"
        ratio = f"{warm['rate']['median'] / ref_rate:.2f}" if ref_rate else ""
        note = " (capped)" if r["capped"] else ""
        rows.append(
            f"| {name}{note} | {fmt_range(warm['rate'])} | {cold} | "
            f"{warm['first_batch_s']['median']:.2f} | {cold_first} | {ratio} |"
        )
    return rows


PROFILE_NOTE = (
    "Lock `acquire` and `SimpleQueue.get` are threads waiting (the main thread for its next "
    "batch, idle workers for tasks), not work; cProfile adds overhead to small Python calls."
)


def jpeg_section(jpeg: dict[str, Any]) -> list[str]:
    lines = [
        "## JPEG decoding pipelines",
        "",
        f"{jpeg['images']} JPEGs ({jpeg['jpeg_bytes'] / MB:.1f} MB, ~375x500, q90) with int64 "
        f"labels, batches of {JPEG_BATCH}, `DecodeImages('image', size=...)` in every pipeline "
        "(the DataLoader datasets call it on one row at a time). Images/s; the last column is "
        "the warm rate relative to the decode-only ceiling.",
        "",
    ]
    for size, s in jpeg["sizes"].items():
        load = s["foreign_load"]
        lines += [
            f"### Decode and resize to {size}",
            "",
            "| pipeline | warm img/s | cold img/s | warm first batch s | cold first batch s "
            "| warm / ceiling |",
            "|---|---:|---:|---:|---:|---:|",
            *method_rows(s["methods"], JPEG_METHODS["ceiling"]),
            "",
            f"Other processes used {load['foreign_cores']:.2f} cores on average during this "
            f"table ({load['wall_s']:.0f} s).",
            "",
        ]
    lines += [
        "cProfile of the first (warm) epoch of a new bale.Loader at 224x224, all threads, "
        "sorted by own time. " + PROFILE_NOTE,
        "",
        "```",
        *jpeg["bale_profile"],
        "```",
        "",
    ]
    return lines


def arrays_section(arrays: dict[str, Any]) -> list[str]:
    lines = [
        "## Decoded arrays",
        "",
        f"Batches of {ARRAY_BATCH} rows; MB/s of decoded data delivered to the training loop. "
        "bale uses its default codec and 1 MiB row groups, num_threads=2 and the default "
        "memory_budget (1 GiB; the window size is given per table). The memmap and h5py "
        "readers run in the main thread, as usually written. h5py files are chunked like "
        "bale's row groups; their random batches read as sorted index lists (h5py requires "
        "increasing indices) and each run stops after a time limit (capped), since a batch "
        "touches most chunks. The last column is the warm rate relative to bale "
        "shuffle='chunks'.",
        "",
    ]
    for name, k in arrays.items():
        load = k["foreign_load"]
        lines += [
            f"### {name}: {k['description']}",
            "",
            f"{k['raw_bytes'] / MB:.0f} MB raw, {k['rows']} rows, {k['rows_per_group']} rows "
            f"per row group, {k['row_groups']} row groups; the Loader's default window: "
            f"{k['default_window_groups']} row groups; bale codec `{k['bale_codec']}`.",
            "",
            "| reader | warm MB/s | cold MB/s | warm first batch s | cold first batch s "
            "| warm / bale chunks |",
            "|---|---:|---:|---:|---:|---:|",
            *method_rows(k["methods"], ARRAY_METHODS["bale_chunks"]),
            "",
            f"Other processes used {load['foreign_cores']:.2f} cores on average during this "
            f"section ({load['wall_s']:.0f} s).",
            "",
            "cProfile of the first (warm) epoch of a new bale.Loader(shuffle='chunks'), "
            "all threads. " + PROFILE_NOTE,
            "",
            "```",
            *k["bale_profile"],
            "```",
            "",
        ]
    return lines


def rss_section(rss: dict[str, Any]) -> list[str]:
    lines = [
        "## Peak RSS against memory_budget",
        "",
        f"A fresh process iterates one epoch of `bale.Loader(shuffle='chunks', batch_size="
        f"{ARRAY_BATCH}, num_threads=2, memory_budget=...)` over a {rss['raw_bytes'] / MiB:.0f} "
        f"MiB (raw; {rss['file_bytes'] / MiB:.0f} MiB on disk) file of 64x64x3 uint8 images, "
        f"{rss['group_raw_bytes'] / MiB:.2f} MiB per row group. Growth = VmHWM at the end minus "
        "VmRSS after the imports (VmHWM reset there through /proc/self/clear_refs), including "
        "what bale imports on first use: one epoch over a two-row-group file of the same "
        "rows runs before the baseline.",
        "",
        "| memory_budget MiB | window groups | peak RSS growth MiB | growth / budget "
        "| file bytes read / file size | MB/s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rss["runs"]:
        lines.append(
            f"| {r['budget_mib']} | {r['window_groups']} | {r['growth'] / MiB:.0f} | "
            f"{r['growth'] / r['budget']:.2f} | {r['reads_per_file']:.2f} | "
            f"{rss['raw_bytes'] / r['seconds'] / MB:.0f} |"
        )
    lines += [
        "",
        "File bytes read / file size: bytes the epoch's read calls returned (`rchar` of "
        "/proc/self/io, all threads, page-cache hits included) over the file's size. bale "
        "reads a compressed block each time it decodes it, so this counts how often each row "
        "group was read and decompressed in the epoch (1.00 = once): above 1, the block cache "
        "dropped blocks before their last use and they were read and decoded again. Measured "
        "from outside the library: nothing in bale is patched or counted from inside.",
    ]
    return [*lines, ""]


def notes_section(results: dict[str, Any]) -> list[str]:
    """Facts computed from this run that bound or explain the verdicts."""
    lines = ["## Reading the numbers", ""]
    for size, s in results["jpeg"]["sizes"].items():
        m = s["methods"]
        ceiling = rate(m, JPEG_METHODS["ceiling"], "warm")
        best = max(rate(m, JPEG_METHODS[k], "warm") for k in ("folder", "h5py", "npy"))
        lines.append(
            f"- JPEG {size}: the best DataLoader pipeline reaches {best / ceiling:.0%} of the "
            f"decode-only ceiling, so no loader could be more than {ceiling / best:.2f}x faster "
            "than it on this machine: all pipelines spend their time in the JPEG decoder."
        )
    for name, k in results["arrays"].items():
        chunks = k["methods"][ARRAY_METHODS["bale_chunks"]]["warm"]
        epoch = statistics.median(chunks["seconds"])
        lines.append(
            f"- {name}: bale's chunk shuffle waits {chunks['first_batch_s']['median']:.2f} s "
            f"for its first batch (epoch {epoch:.2f} s): it reads and decodes the first "
            "window's row groups before serving a batch from it. The warm memmap is a memory "
            "copy; bale decompresses every byte (the uncompressed bale file shows what is left "
            "when it does not)."
        )
    touch = results["first_touch"]
    mib = touch["bytes"] / MiB
    lines.append(
        f"- Fresh memory is slow on this VM: writing the first byte of each page of a new "
        f"{mib:.0f} MiB buffer took {touch['plain_s']['median']:.2f} s "
        f"({touch['plain_s']['median'] / mib * 1e3:.1f} ms per MiB), against "
        f"{touch['after_evict_s']['median']:.2f} s "
        f"({touch['after_evict_s']['median'] / mib * 1e3:.2f} ms per MiB) right after an "
        "eviction had freed as much page cache: the guest kernel's own cost. The difference is "
        "the host faulting in pages that the guest had reported free (this VM's virtio-balloon "
        "has free page reporting on). Code that fills big new buffers (such as a shuffle "
        "window) pays this on first touch, except right after an eviction: one reason a cold "
        "run can beat a warm one here."
    )
    for r in results["rss"]["runs"]:
        lines.append(
            f"- memory_budget {r['budget_mib']} MiB: the epoch read the file "
            f"{r['reads_per_file']:.2f} times over (each row group read and decoded that often "
            "on average)."
        )
    return [*lines, ""]


def src_note(results: dict[str, Any]) -> str:
    """The digest of the bale source measured, and whether src/ changed during the run."""
    start = results["environment"]["src_digest"]
    children = {r["src_digest"] for r in results["rss"]["runs"]}
    if children != {start}:
        return (
            f"{start}; **the RSS subprocesses ran other code** ({', '.join(sorted(children))}): "
            "the sections did not all measure the same source"
        )
    if results["src_digest_at_end"] != start:
        return (
            f"{start} in every section (src/ was edited during the run, to "
            f"{results['src_digest_at_end']}; the subprocesses used a copy taken at the start)"
        )
    return f"{start} (unchanged during the run)"


def report(results: dict[str, Any], verdicts: list[Verdict]) -> str:
    env = results["environment"]
    cfg = results["config"]
    command = ".venv/bin/python -m bench.loader_bench" + (" --quick" if cfg["quick"] else "")
    failures = results["eviction_failures"]
    lines = [
        "# bale loader benchmark",
        "",
        f"Date: {env['date']}. Command: `{command}` (total {results['total_seconds']:.0f} s).",
        "",
        *machine_section(
            env,
            src_note(results),
            note="The machine is shared with other work: each section records how many cores other processes used meanwhile. Compare ratios within one run rather than absolute rates.",
        ),
        "",
        "## Method",
        "",
        "Data from `bench/photo_data.py` (real scikit-image photos, deterministic seeds). Each "
        f"value is the median (min-max) of {cfg['repeats']} repeats; each repeat runs every "
        "pipeline warm and then cold, round-robin, after one untimed warm-up epoch each. Warm "
        "runs follow a read of all their files (page cache filled), cold runs follow "
        "`os.sync()` + `posix_fadvise(POSIX_FADV_DONTNEED)` on every file involved. The "
        "DataLoader pipelines use `DataLoader(num_workers=2, batch_size=64, shuffle=True)` "
        "with default (non-persistent) workers: a persistent worker would keep its memmap "
        "mapped, and mapped pages survive eviction. Worker start-up is therefore part of each "
        "of their epochs (see the first-batch column). bale keeps one Loader across epochs "
        "(`set_epoch`), as a training loop does, so its threads and window buffers are made in "
        "the untimed warm-up epoch; the memmap and h5py readers open their files in every "
        "epoch.",
        "",
        "Cold-cache check: "
        + (
            "every cold run found < 1% of its files resident right after eviction (`fincore`) "
            "and read >= 90% of what it delivered from the block device (getrusage "
            "`ru_inblock` of the benchmark and its reaped DataLoader workers); every warm run "
            "read < 5% of the files from the device."
            if not failures
            else "FAILED for: " + "; ".join(failures)
        )
        + " This is a VM on a virtual disk: a cold read in the guest may still be served from "
        "the host's cache, so cold figures are an upper bound for a physical disk.",
        "",
        *aims_section(verdicts),
    ]
    lines += notes_section(results)
    lines += jpeg_section(results["jpeg"])
    lines += arrays_section(results["arrays"])
    lines += rss_section(results["rss"])
    return "\n".join(lines) + "\n"


# -- main ---------------------------------------------------------------------------------------


def run_all(cfg: Config) -> dict[str, Any]:
    snapshot = snapshot_bale()  # first: the code this process has imported
    results: dict[str, Any] = {"environment": environment(), "config": vars(cfg)}
    results["first_touch"] = first_touch_probe(3)
    touch = results["first_touch"]
    print(
        f"first touch of 256 MiB: {touch['plain_s']['median']:.2f} s, right after an eviction "
        f"{touch['after_evict_s']['median']:.2f} s"
    )
    results["jpeg"] = bench_jpeg(cfg)
    images = photo_data.uint8_images(cfg.n_uint8, seed=1)
    arrays = {
        "uint8_images": bench_array(
            cfg, "uint8_images", f"uint8 images ({cfg.n_uint8}, 64, 64, 3)", images
        )
    }
    rss_path = write_rss_file(images, cfg.rss_copies)
    del images
    activations = photo_data.sparse_activations(cfg.n_act, seed=2)
    arrays["sparse_activations"] = bench_array(
        cfg,
        "sparse_activations",
        f"float32 ReLU activations ({cfg.n_act}, 32, 16, 16)",
        activations,
    )
    del activations
    results["arrays"] = arrays
    results["rss"] = bench_rss(cfg, rss_path, snapshot)
    rss_path.unlink()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, 1-2 minutes")
    parser.add_argument("--rss-child", nargs=2, metavar=("PATH", "BUDGET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], int(args.rss_child[1]))
        return
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    cfg = Config.make(args.quick)
    WORK.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        results = run_all(cfg)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    verdicts = judge_jpeg(results["jpeg"]) + judge_arrays(results["arrays"])
    verdicts += [judge_cold_shuffle(results["arrays"]), *judge_rss(results["rss"])]
    results["aims"] = [v.to_json() for v in verdicts]
    results["eviction_failures"] = eviction_failures(results)
    results["total_seconds"] = time.perf_counter() - t0
    results["src_digest_at_end"] = src_digest()
    written = write_report("loader_bench", results, report(results, verdicts), quick=cfg.quick)
    print_aims(verdicts)
    failures = results["eviction_failures"]
    print("eviction check: " + ("ok" if not failures else "FAILED: " + "; ".join(failures)))
    print(f"bale source digest: {src_note(results)}")
    print(f"total {results['total_seconds']:.0f} s; wrote {written}")


if __name__ == "__main__":
    main()
