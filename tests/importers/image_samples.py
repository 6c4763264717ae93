"""Sample image folders and manifests shared by the image importer tests (real photo crops)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import simplejpeg
import skimage.data as skdata
from PIL import Image

from bale.importers.base import RowSource, SourceBatch

PHOTOS = {"cat": "chelsea", "coffee": "coffee", "rocket": "rocket"}


def jpeg(array: np.ndarray, quality: int = 85) -> bytes:
    return bytes(simplejpeg.encode_jpeg(np.ascontiguousarray(array), quality=quality))


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def make_folder(root: Path, per_class: int = 4) -> dict[str, bytes]:
    """Class folders of real photo crops (JPEG, one PNG), plus a corrupt and a truncated JPEG.
    Returns relative path -> the file's bytes for the readable images."""
    files: dict[str, bytes] = {}
    for label, name in PHOTOS.items():
        photo = getattr(skdata, name)()
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            crop = photo[i * 9 : i * 9 + 60 + 4 * i, i * 11 : i * 11 + 80]
            files[f"{label}/{i:02d}.jpg"] = jpeg(crop)
    files["coffee/zz.png"] = png(skdata.coffee()[100:140, 200:250])
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    good = files["cat/00.jpg"]
    (root / "cat" / "corrupt.jpg").write_bytes(np.random.default_rng(0).bytes(500))
    (root / "rocket" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "cat" / ".DS_Store").write_bytes(b"junk")
    (root / "cat" / "notes.txt").write_text("not an image")
    return files


def read_all(source: RowSource) -> SourceBatch:
    return source.read(0, source.num_rows)


def write_manifest(path: Path, rows: list[dict[str, Any]], kind: str) -> Path:
    if kind == "csv":
        names = list(rows[0])
        lines = [",".join(names)]
        for row in rows:
            lines.append(",".join(csv_cell(row[n]) for n in names))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif kind == "json":
        path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    else:
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def csv_cell(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, list) else str(value)
    return f'"{text}"' if "," in text else text
