"""End-to-end demo: an image library of real photos -> one .bale file per split -> read back fast.

Run with ``make demo``. It
1. builds a small "image library" the way users have one: a folder per class of JPEG files, cut
   from the real photographs bundled with scikit-image (nothing is downloaded);
2. packs the folder into one shuffled ``.bale`` file with ``bale.pack`` (the original JPEG
   bytes, the label, the relative path; class names in the metadata), then splits it into
   train/valid/test files with ``bale.split``, stratified by label;
3. reads them back: random rows, a shuffled gather, a full sequential pass, checks every byte
   against the source files, verifies checksums, and prints how fast each step was.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import simplejpeg
import skimage.data

import bale
from bale.ops.verify import verify

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
IMAGES_PER_CLASS = 200
SPLITS = ("train", "valid", "test")
SPLITS_RATIOS = (0.8, 0.1, 0.1)


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


def pack_and_split(root: Path, out: Path) -> dict[str, Path]:
    """`bale pack` the folder (shuffled, seeded, JPEG bytes kept as they are), then
    `bale split` it into train/valid/test with the class proportions kept."""
    report = bale.pack(root, out / "library.bale", progress=False)
    print("   " + report.summary().replace("\n", "\n   "))
    split = bale.split(
        out / "library.bale", SPLITS_RATIOS, names=SPLITS, stratify="label", out_dir=out
    )
    print("   " + split.summary().replace("\n", "\n   "))
    return {o.name: Path(o.path) for o in split.outputs}


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
        paths = pack_and_split(root, out)
        took = time.perf_counter() - t0
        print(
            f"2. packed and split into {', '.join(p.name for p in paths.values())} in "
            f"{took:.1f} s ({len(files) / took:.0f} images/s, every JPEG decoded once to check it)"
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
        for rel, jpeg in zip(everything["path"], everything["image"], strict=True):
            if (root / rel).read_bytes() != jpeg:
                print(f"MISMATCH in {rel}", file=sys.stderr)
                return 1
        mb = sum(len(j) for j in everything["image"]) / 1e6
        print(
            f"   sequential read of all {len(ds)} rows: {mb / read_s:.0f} MB/s; "
            "all JPEG bytes identical to the source files"
        )

        rng = np.random.default_rng(1)
        indices = rng.permutation(len(ds))[:256]
        t0 = time.perf_counter()
        batch = ds[indices]
        gather_ms = (time.perf_counter() - t0) * 1e3
        decoded = [simplejpeg.decode_jpeg(j) for j in batch["image"]]
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
        counts = np.bincount(labels, minlength=len(ds.metadata["classes"]))
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
