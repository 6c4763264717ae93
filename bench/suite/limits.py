"""What the machine allows, measured in the same run as the tools: the ceilings the report
divides bale's figures by.

- cold sequential read of a file much larger than one read, 4 MiB reads, as one stream and as
  four parallel streams (MB/s);
- cold random ``pread`` at 4 KiB, 64 KiB and 1 MiB, readahead off, one and four threads (IOPS);
- single-thread ``memcpy`` bandwidth (NumPy ``copyto`` of 256 MiB);
- single-core decompression speed of each codec on 1 MiB pieces of the suite's own arrays
  (bale's codec objects for zstd, lz4 and blosc2; zlib for the gzip-4 that h5py uses);
- single-core JPEG decode rate with simplejpeg (the decoder every tool's decode stage uses).

Every figure is the median (min-max) of ``--repeats`` runs.

    python -m bench.suite.limits WORK --out limits.json [--file-mib 1024] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import evict, resident_bytes
from bench.stats import summary
from bench.suite import data

MiB = 1 << 20
BLOCK_SIZES = {"4KiB": 4096, "64KiB": 64 * 1024, "1MiB": MiB}
THREADS = (1, 4)
PIECE = MiB  # compression unit: bale's default row group


def make_file(path: Path, size: int) -> None:
    """Incompressible data, so that no layer below can shortcut the reads."""
    if path.exists() and path.stat().st_size == size:
        return
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        for _ in range(size // (64 * MiB)):
            f.write(rng.integers(0, 256, 64 * MiB, dtype=np.uint8).tobytes())
        f.flush()
        os.fsync(f.fileno())


def cold_sequential(path: Path) -> dict[str, Any]:
    evict([path])
    resident = resident_bytes([path])
    t0 = time.perf_counter()
    total = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(4 * MiB):
            total += len(chunk)
    seconds = time.perf_counter() - t0
    return {"mb_s": total / seconds / 1e6, "resident_before": resident}


def cold_parallel(path: Path, streams: int = 4) -> dict[str, Any]:
    """Cold read of the file as ``streams`` sequential streams at once (one per quarter): the
    block device may serve parallel streams faster than one, and loaders read in threads."""
    evict([path])
    resident = resident_bytes([path])
    size = path.stat().st_size
    part = size // streams

    def stream(k: int) -> int:
        total = 0
        fd = os.open(path, os.O_RDONLY)
        try:
            for off in range(k * part, (k + 1) * part, 4 * MiB):
                total += len(os.pread(fd, min(4 * MiB, (k + 1) * part - off), off))
        finally:
            os.close(fd)
        return total

    t0 = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        total = sum(pool.map(stream, range(streams)))
    seconds = time.perf_counter() - t0
    return {"mb_s": total / seconds / 1e6, "resident_before": resident}


def cold_pread(path: Path, block: int, threads: int, budget_s: float) -> dict[str, Any]:
    """Random aligned preads over a cold file: at most a quarter of the file is touched, so
    repeated offsets rarely hit pages an earlier read brought in."""
    size = path.stat().st_size
    n = max(64, min(size // 4 // block, 20_000))
    offsets = np.random.default_rng(block + threads).integers(0, size // block, n) * block
    evict([path])
    resident = resident_bytes([path])
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead: one read, one I/O
        done = [0] * threads
        t0 = time.perf_counter()

        def worker(k: int) -> None:
            for off in offsets[k::threads].tolist():
                os.pread(fd, block, off)
                done[k] += 1
                if time.perf_counter() - t0 > budget_s:
                    return

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(worker, range(threads)))
        seconds = time.perf_counter() - t0
    finally:
        os.close(fd)
    reads = sum(done)
    return {
        "iops": reads / seconds,
        "mb_s": reads * block / seconds / 1e6,
        "latency_s": seconds / reads * threads,
        "reads": reads,
        "resident_before": resident,
    }


def memcpy_gb_s() -> float:
    src = np.ones(256 * MiB, dtype=np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # first touch of dst's pages is not copying
    t0 = time.perf_counter()
    np.copyto(dst, src)
    return src.nbytes / (time.perf_counter() - t0) / 1e9


Compress = Callable[[bytes], bytes]
Decompress = Callable[[bytes, int], Any]


def codecs_for(work: Path, kind: str) -> dict[str, tuple[Compress, Decompress]]:
    """name -> (compress, decompress(payload, raw_size)) for the codecs the tools use on a kind."""
    from bale._core.defaults import default_codec
    from bale.codecs import parse_codec
    from bale.format.schema import Array

    spec = data.load_spec(work / "data", kind)
    out: dict[str, tuple[Compress, Decompress]] = {}
    shape = tuple(spec.shape or ())
    bale_default = default_codec(Array(np.dtype(spec.dtype), shape))
    candidates = {
        f"bale default ({_spec_name(bale_default)})": bale_default,
        "zstd:1": parse_codec("zstd:1"),
        "zstd:3": parse_codec("zstd:3"),
        "lz4": parse_codec("lz4"),
        "blosc2:zstd:5:shuffle (blosc2 default)": parse_codec("blosc2:zstd:5:shuffle"),
    }
    itemsize = np.dtype(spec.dtype).itemsize
    for name, codec in candidates.items():
        c = codec.for_itemsize(shape[-1] if itemsize == 1 and "bale" in name else itemsize)
        out[name] = (
            lambda raw, c=c: bytes(c.encode(memoryview(raw))),
            lambda payload, n, c=c: c.decode(memoryview(payload), n),
        )
    out["gzip-4 (zlib, as h5py)"] = (
        lambda raw: zlib.compress(raw, 4),
        lambda payload, n: zlib.decompress(payload),
    )
    return out


def _spec_name(codec: Any) -> str:
    from bale.codecs import codec_spec

    return str(codec_spec(codec.config()))


def decompression(work: Path, kind: str, max_bytes: int) -> dict[str, Any]:
    x = np.load(work / "data" / kind / "x.npy", mmap_mode="r")
    raw = np.ascontiguousarray(x[: max(1, max_bytes // max(1, x[0].nbytes))]).tobytes()
    pieces = [raw[i : i + PIECE] for i in range(0, len(raw), PIECE)]
    out = {}
    for name, (compress, decompress) in codecs_for(work, kind).items():
        packed = [compress(p) for p in pieces]
        t0 = time.perf_counter()
        for p, r in zip(packed, pieces, strict=True):
            decompress(p, len(r))
        seconds = time.perf_counter() - t0
        out[name] = {
            "mb_s": len(raw) / seconds / 1e6,
            "ratio": len(raw) / sum(len(p) for p in packed),
        }
    return out


def jpeg_decode(work: Path, max_images: int) -> dict[str, float]:
    import pickle

    import simplejpeg

    with open(work / "data" / "jpeg" / "x.pkl", "rb") as f:
        jpegs: list[bytes] = pickle.load(f)[:max_images]
    t0 = time.perf_counter()
    pixels = sum(simplejpeg.decode_jpeg(j).nbytes for j in jpegs)
    seconds = time.perf_counter() - t0
    return {"images_s": len(jpegs) / seconds, "decoded_mb_s": pixels / seconds / 1e6}


def measure(work: Path, file_mib: int, repeats: int, kinds: list[str]) -> dict[str, Any]:
    path = work / "limits.bin"
    make_file(path, file_mib * MiB)
    runs: dict[str, list[Any]] = {
        "seq": [],
        "par": [],
        "memcpy": [],
        "jpeg": [],
        "pread": [],
        "codec": [],
    }
    for _ in range(repeats):
        runs["seq"].append(cold_sequential(path))
        runs["par"].append(cold_parallel(path))
        runs["pread"].append(
            {
                f"{name}/t{t}": cold_pread(path, block, t, budget_s=3.0)
                for name, block in BLOCK_SIZES.items()
                for t in THREADS
            }
        )
        runs["memcpy"].append(memcpy_gb_s())
        if "jpeg" in kinds:
            runs["jpeg"].append(jpeg_decode(work, 400))
        runs["codec"].append({k: decompression(work, k, 64 * MiB) for k in kinds if k != "jpeg"})
    result: dict[str, Any] = {
        "file_bytes": path.stat().st_size,
        "cold_seq_mb_s": summary([r["mb_s"] for r in runs["seq"]]),
        "cold_seq_resident_before": max(r["resident_before"] or 0 for r in runs["seq"]),
        "cold_seq4_mb_s": summary([r["mb_s"] for r in runs["par"]]),
        "memcpy_gb_s": summary(runs["memcpy"]),
        "pread": {
            key: {
                "iops": summary([r[key]["iops"] for r in runs["pread"]]),
                "mb_s": summary([r[key]["mb_s"] for r in runs["pread"]]),
                "latency_s": summary([r[key]["latency_s"] for r in runs["pread"]]),
                "resident_before": max(r[key]["resident_before"] or 0 for r in runs["pread"]),
            }
            for key in runs["pread"][0]
        },
        "decompress_mb_s": {
            kind: {
                name: {
                    "mb_s": summary([r[kind][name]["mb_s"] for r in runs["codec"]]),
                    "ratio": runs["codec"][0][kind][name]["ratio"],
                }
                for name in runs["codec"][0][kind]
            }
            for kind in runs["codec"][0]
        },
    }
    if runs["jpeg"]:
        result["jpeg_decode_images_s"] = summary([r["images_s"] for r in runs["jpeg"]])
        result["jpeg_decode_mb_s"] = summary([r["decoded_mb_s"] for r in runs["jpeg"]])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--file-mib", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kinds", default=",".join(data.KINDS))
    args = parser.parse_args(argv)
    result = measure(args.work, args.file_mib, args.repeats, args.kinds.split(","))
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
