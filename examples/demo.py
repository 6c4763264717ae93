"""End-to-end demo: an image library of real photos -> one .bale file per split -> read back fast.

Run with ``make demo``. It
1. builds a small "image library" the way users have one: a folder per class of JPEG files, cut
   from the real photographs bundled with scikit-image (nothing is downloaded);
2. writes train/valid/test ``.bale`` files holding the original JPEG bytes, the label, the
   relative path, and a decoded 64x64 thumbnail, with class names in the metadata;
3. reads them back: random rows, a shuffled gather, a full sequential pass, checks every byte
   against the source files, verifies checksums, and prints how fast each step was.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import simplejpeg
import skimage.data
from PIL import Image

import bale
from bale.verify import verify

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
IMAGES_PER_CLASS = 200
SPLITS = {"train": 0.8, "valid": 0.1, "test": 0.1}


def make_image_library(root: Path, seed: int = 0) -> list[tuple[str, int]]:
    """A folder per class of JPEGs, as random crops, flips and rescales of real photos."""
    rng = np.random.default_rng(seed)
    files = []
    for label, name in enumerate(PHOTOS):
        photo = getattr(skimage.data, name)()
        (root / name).mkdir(parents=True)
        for i in range(IMAGES_PER_CLASS):
            h = int(rng.integers(photo.shape[0] // 2, photo.shape[0] + 1))
            w = int(rng.integers(photo.shape[1] // 2, photo.shape[1] + 1))
            y = int(rng.integers(0, photo.shape[0] - h + 1))
            x = int(rng.integers(0, photo.shape[1] - w + 1))
            crop = photo[y : y + h, x : x + w]
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            jpeg = simplejpeg.encode_jpeg(np.ascontiguousarray(crop), quality=90)
            relative = f"{name}/img_{i:05d}.jpg"
            (root / relative).write_bytes(jpeg)
            files.append((relative, label))
    return files


def thumbnail(jpeg: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(jpeg))
    image.draft("RGB", (128, 128))  # decode at reduced size straight from the DCT: much faster
    return np.asarray(image.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR))


def pack_splits(
    root: Path, files: list[tuple[str, int]], out: Path, seed: int = 0
) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(files))  # shuffled once at pack time: class folders are sorted
    bounds = np.cumsum([round(f * len(files)) for f in SPLITS.values()])
    paths = {}
    for split, part in zip(SPLITS, np.split(order, bounds[:-1]), strict=True):
        path = out / f"{split}.bale"
        metadata = {"classes": list(PHOTOS), "split": split, "source": "skimage.data photos"}
        with bale.Writer(path, metadata=metadata) as writer:
            for start in range(0, len(part), 64):
                batch = [files[i] for i in part[start : start + 64]]
                jpegs = [(root / rel).read_bytes() for rel, _ in batch]
                writer.write(
                    {
                        "jpeg": jpegs,
                        "thumb": np.stack([thumbnail(j) for j in jpegs]),
                        "label": np.array([label for _, label in batch], dtype=np.int16),
                        "path": [rel for rel, _ in batch],
                    }
                )
        paths[split] = path
    return paths


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bale-demo-") as tmp:
        root, out = Path(tmp) / "library", Path(tmp) / "bale"
        out.mkdir()
        t0 = time.perf_counter()
        files = make_image_library(root)
        source_bytes = sum((root / rel).stat().st_size for rel, _ in files)
        print(
            f"1. image library: {len(files)} JPEGs in {len(PHOTOS)} class folders, "
            f"{source_bytes / 1e6:.1f} MB ({time.perf_counter() - t0:.1f} s to make)"
        )

        t0 = time.perf_counter()
        paths = pack_splits(root, files, out)
        took = time.perf_counter() - t0
        print(
            f"2. wrote {', '.join(p.name for p in paths.values())} in {took:.1f} s "
            f"({len(files) / took:.0f} images/s incl. decoding thumbnails)"
        )
        for split, path in paths.items():
            print(f"   {split:<5} {os.path.getsize(path) / 1e6:6.1f} MB, one file")

        train = paths["train"]
        t0 = time.perf_counter()
        ds = bale.open(train)
        open_ms = (time.perf_counter() - t0) * 1e3
        print(f"3. opened {train.name} in {open_ms:.2f} ms: {ds}")

        # Every stored JPEG must equal its source file, byte for byte.
        t0 = time.perf_counter()
        everything = ds.read()
        read_s = time.perf_counter() - t0
        for rel, jpeg in zip(everything["path"], everything["jpeg"], strict=True):
            if (root / rel).read_bytes() != jpeg:
                print(f"MISMATCH in {rel}", file=sys.stderr)
                return 1
        mb = sum(len(j) for j in everything["jpeg"]) / 1e6 + everything["thumb"].nbytes / 1e6
        print(
            f"   sequential read of all {len(ds)} rows: {mb / read_s:.0f} MB/s; "
            "all JPEG bytes identical to the source files"
        )

        rng = np.random.default_rng(1)
        indices = rng.permutation(len(ds))[:256]
        t0 = time.perf_counter()
        batch = ds[indices]
        gather_ms = (time.perf_counter() - t0) * 1e3
        decoded = [simplejpeg.decode_jpeg(j) for j in batch["jpeg"]]
        print(
            f"   shuffled batch of 256 rows: {gather_ms:.1f} ms; first image "
            f"{decoded[0].shape}, class {ds.metadata['classes'][batch['label'][0]]!r}"
        )

        group_rows = ds.row_group_sizes[0]
        ds[0]  # bring the first row group's blocks into the block cache
        t0 = time.perf_counter()
        for i in range(2000):
            ds[i % group_rows]
        cached_us = (time.perf_counter() - t0) / 2000 * 1e6
        t0 = time.perf_counter()
        for i in indices[:100]:
            ds[int(i)]
        random_us = (time.perf_counter() - t0) / 100 * 1e6
        print(
            f"   single-row access: {cached_us:.0f} us per row from the block cache, "
            f"{random_us:.0f} us for a random row of the file (reads its whole row group)"
        )

        labels = ds["label"][:]
        counts = np.bincount(labels, minlength=len(PHOTOS))
        print(f"   labels per class in train: {counts.tolist()}")
        ds.close()

        for path in paths.values():
            report = verify(path)
            print(f"4. {report.summary()}")
            if not report.ok:
                return 1
    print("demo finished: everything read back exactly.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
