"""Packing a JPEG folder: `bale.pack` against writing the same data with h5py and with
WebDataset's tar writer (issue 4's figures). Images/s, MB/s of source files, output size.

    .venv/bin/python -m bench.pack_bench [--quick]

The source is a class-folder tree of ImageNet-like JPEGs made from the photos bundled with
scikit-image (bench/photo_data.py). Every writer reads the same files from a warm page cache
(they are read once before timing) and writes to the same disk. Two jobs:

- bytes: keep each JPEG's bytes and its label (bale's default; h5py as a variable-length uint8
  dataset, as users store encoded images in HDF5; WebDataset as .jpg + .cls tar members);
- decoded: decode and resize to 224x224 uint8 (bale's ``size=``; h5py with Pillow into a
  chunked gzip-4 dataset, the way the h5py docs write image arrays).

Results: bench/results/pack_bench.json and .md (median and min-max of the repeats, ratios to
bale measured in the same run).
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

import h5py
import numpy as np
import simplejpeg
from PIL import Image

import bale
from bale.importers.image_folder import ImageFolderSource
from bench.machine import git_state, version_of
from bench.photo_data import jpeg_images, photo_names
from bench.results import OUT, write_report

WORK = OUT / "pack"
SIZE = (224, 224)
MB = 1e6


def make_folder(root: Path, n: int) -> tuple[list[Path], np.ndarray, int]:
    """``n`` JPEGs in class folders; returns the files (sorted), labels and total bytes."""
    if root.exists():
        shutil.rmtree(root)
    jpegs, labels = jpeg_images(n, seed=7)
    names = photo_names()
    files = []
    for i, (data, label) in enumerate(zip(jpegs, labels.tolist(), strict=True)):
        folder = root / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"img_{i:06d}.jpg"
        path.write_bytes(data)
        files.append(path)
    files.sort()
    classes = sorted(names)
    file_labels = np.array([classes.index(p.parent.name) for p in files], np.int64)
    return files, file_labels, sum(len(j) for j in jpegs)


def decode_resize(data: bytes) -> np.ndarray:
    """Decode and centre-crop-resize to SIZE, as bale's ``resize_mode="crop"`` does."""
    image = Image.fromarray(simplejpeg.decode_jpeg(data, colorspace="RGB"))
    w, h = image.size
    scale = max(SIZE[1] / w, SIZE[0] / h)
    box_w, box_h = SIZE[1] / scale, SIZE[0] / scale
    left, top = max(0.0, (w - box_w) / 2), max(0.0, (h - box_h) / 2)
    resized = image.resize(
        (SIZE[1], SIZE[0]), Image.Resampling.BILINEAR, box=(left, top, left + box_w, top + box_h)
    )
    return np.asarray(resized)


# -- writers: each returns the paths it wrote ----------------------------------------------------


def bale_bytes(root: Path, out: Path, workers: int | None, verify: bool) -> list[Path]:
    source = ImageFolderSource(root, verify=verify)
    bale.pack(source, out / "train.bale", workers=workers, progress=False, overwrite=True)
    return [out / "train.bale"]


def bale_decoded(root: Path, out: Path, workers: int | None) -> list[Path]:
    source = ImageFolderSource(root, size=SIZE)
    bale.pack(source, out / "train.bale", workers=workers, progress=False, overwrite=True)
    return [out / "train.bale"]


def h5py_bytes(files: list[Path], labels: np.ndarray, out: Path) -> list[Path]:
    path = out / "train.h5"
    with h5py.File(path, "w") as f:
        images = f.create_dataset("image", (len(files),), dtype=h5py.vlen_dtype(np.uint8))
        for i, p in enumerate(files):
            images[i] = np.frombuffer(p.read_bytes(), np.uint8)
        f.create_dataset("label", data=labels)
    return [path]


def h5py_decoded(files: list[Path], labels: np.ndarray, out: Path) -> list[Path]:
    path = out / "train.h5"
    batch = 64
    with h5py.File(path, "w") as f:
        images = f.create_dataset(
            "image",
            (len(files), *SIZE, 3),
            dtype=np.uint8,
            chunks=(16, *SIZE, 3),
            compression="gzip",
            compression_opts=4,
        )
        for a in range(0, len(files), batch):
            images[a : a + batch] = np.stack(
                [decode_resize(p.read_bytes()) for p in files[a : a + batch]]
            )
        f.create_dataset("label", data=labels)
    return [path]


def webdataset_bytes(files: list[Path], labels: np.ndarray, out: Path) -> list[Path]:
    import webdataset as wds

    pattern = str(out / "train-%06d.tar")
    with wds.ShardWriter(pattern, maxsize=1 << 30, verbose=0) as sink:
        for i, (p, label) in enumerate(zip(files, labels.tolist(), strict=True)):
            sink.write({"__key__": f"{i:08d}", "jpg": p.read_bytes(), "cls": label})
    return sorted(out.glob("train-*.tar"))


# -- measurement ---------------------------------------------------------------------------------


def measure(
    name: str, job: str, write: Callable[[Path], list[Path]], repeats: int
) -> dict[str, Any]:
    seconds, sizes, counts = [], [], []
    for r in range(repeats):
        out = WORK / "runs" / f"{job}-{name}-{r}".replace(" ", "_").replace("/", "_")
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        os.sync()
        t0 = time.perf_counter()
        paths = write(out)
        seconds.append(time.perf_counter() - t0)
        sizes.append(sum(p.stat().st_size for p in paths))
        counts.append(len(paths))
        shutil.rmtree(out)
    return {"name": name, "job": job, "seconds": seconds, "bytes": sizes[0], "files": counts[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="400 images, 2 repeats")
    args = parser.parse_args()
    n, repeats = (400, 2) if args.quick else (3000, 3)
    workers = None  # bale's default: worker processes only when reading is slow (decoding)
    root = WORK / "jpegs"
    files, labels, source_bytes = make_folder(root, n)
    for p in files:  # warm page cache for every writer alike
        p.read_bytes()
    jobs: list[tuple[str, str, Callable[[Path], list[Path]]]] = [
        ("bale.pack (bytes, verify)", "bytes", lambda o: bale_bytes(root, o, workers, True)),
        ("bale.pack (bytes, verify=False)", "bytes", lambda o: bale_bytes(root, o, workers, False)),
        ("h5py vlen uint8", "bytes", lambda o: h5py_bytes(files, labels, o)),
        ("WebDataset ShardWriter", "bytes", lambda o: webdataset_bytes(files, labels, o)),
        ("bale.pack (size=224x224)", "decoded", lambda o: bale_decoded(root, o, workers)),
        ("h5py gzip-4 (Pillow resize)", "decoded", lambda o: h5py_decoded(files, labels, o)),
    ]
    results = [measure(name, job, write, repeats) for name, job, write in jobs]
    for r in results:
        r["median_s"] = statistics.median(r["seconds"])
        r["images_per_s"] = n / r["median_s"]
        r["source_mb_per_s"] = source_bytes / MB / r["median_s"]
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "bale": bale.__version__,
            "h5py": h5py.__version__,
            "webdataset": version_of("webdataset"),
            "git": git_state(),
        },
        "images": n,
        "source_bytes": source_bytes,
        "repeats": repeats,
        "workers": workers,
        "results": results,
        "command": ".venv/bin/python -m bench.pack_bench" + (" --quick" if args.quick else ""),
    }
    write_report("pack_bench", report, markdown(report), quick=args.quick)
    print(markdown(report))
    shutil.rmtree(WORK, ignore_errors=True)


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "## Packing a JPEG folder (`bench/pack_bench.py`)",
        "",
        f"{report['images']} ImageNet-like JPEGs from real photos in class folders "
        f"({report['source_bytes'] / MB:.0f} MB), page cache warm; {report['repeats']} repeats, "
        f"median (min-max). Machine: {m['cpus']} CPUs, {m['platform']}, Python {m['python']}; "
        f"bale {m['bale']} (git {m.get('git', 'unknown')}), h5py {m['h5py']}, "
        f"webdataset {m['webdataset']}. bale.pack runs "
        "with its defaults: it shuffles rows, and starts one worker process per CPU only when "
        "the first rows read slower than 256 MB/s (decoding); h5py and "
        "WebDataset are written in one process, in file order, as their docs show. "
        "`verify` decodes each JPEG once at 1/8 scale so corrupt files are skipped, not stored.",
        "",
    ]
    for job, title in (("bytes", "keep the JPEG bytes"), ("decoded", "decode to 224x224 uint8")):
        rows = [r for r in report["results"] if r["job"] == job]
        base = rows[0]
        lines += [
            f"### {title}",
            "",
            "| writer | images/s | source MB/s | seconds | output | files | vs bale |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            lo, hi = min(r["seconds"]), max(r["seconds"])
            lines.append(
                f"| {r['name']} | {r['images_per_s']:.0f} | {r['source_mb_per_s']:.1f} | "
                f"{r['median_s']:.2f} ({lo:.2f}-{hi:.2f}) | {r['bytes'] / MB:.1f} MB | "
                f"{r['files']} | {base['median_s'] / r['median_s']:.2f}x |"
            )
        lines.append("")
    lines.append(f"Reproduce: `{report['command']}`")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
