"""Small train/valid .bale files of labelled 64x64 crops of real photos, for the examples.

Each class is one photograph bundled with scikit-image (nothing is downloaded); rows are random
crops of it, written shuffled once, as a real dataset would be packed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

import bale

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
CROPS_PER_PHOTO = {"train": 800, "valid": 100}


def photo_crops(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random 64x64 crops (random size, position and flip) of each photo."""
    images, labels = [], []
    for label, name in enumerate(PHOTOS):
        photo = getattr(skimage.data, name)()
        height, width = photo.shape[:2]
        for _ in range(count):
            size = int(rng.integers(min(height, width) // 6, min(height, width) // 2))
            y = int(rng.integers(0, height - size + 1))
            x = int(rng.integers(0, width - size + 1))
            crop = Image.fromarray(photo[y : y + size, x : x + size])
            crop = crop.resize((64, 64), Image.Resampling.BILINEAR)
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            images.append(np.asarray(crop))
            labels.append(label)
    order = rng.permutation(len(labels))  # files are written shuffled once, as in real use
    return np.stack(images)[order], np.array(labels, dtype=np.int64)[order]


def write_splits(out: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    paths = {}
    for split, count in CROPS_PER_PHOTO.items():
        images, labels = photo_crops(count, rng)
        paths[split] = out / f"{split}.bale"
        bale.write(
            paths[split],
            {"image": images, "label": labels},
            metadata={"classes": list(PHOTOS)},
            row_group_rows=512,
        )
    return paths
