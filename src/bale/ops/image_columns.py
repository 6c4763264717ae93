"""Which columns of a file hold images and labels, and image rows as pictures: shared by
`bale show` (contact sheets) and `bale export --images` (viewable files).

An image column is a bytes column whose rows are encoded images (JPEG, PNG, GIF, BMP, WebP,
TIFF: recognised by their first bytes), or a uint8 array column shaped like one picture per row:
``(H, W)``, ``(H, W, 1|3|4)`` (channels last) or ``(1|3|4, H, W)`` (channels first, when the
last dimension is not itself 1 to 4), each side at least 4 pixels. A label column is a scalar integer or a string column,
preferably named ``label``, ``labels``, ``y``, ``target``, ``class`` or ``category``; its class
names come from ``metadata["classes"]`` (a list indexed by the label).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from bale._core.dataset import Dataset
from bale.errors import BaleError
from bale.format.schema import Array, Bytes, String

__all__ = [
    "IMAGE_FORMATS",
    "LABEL_NAMES",
    "ImageColumn",
    "LabelColumn",
    "find_image_column",
    "find_label_column",
    "image_extension",
    "pil",
]

#: Encoded image formats recognised in bytes columns: (first bytes, file extension).
IMAGE_FORMATS: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tif"),
    (b"MM\x00*", "tif"),
)

#: Column names taken as the label, in order of preference.
LABEL_NAMES = ("label", "labels", "y", "target", "class", "category")

Layout = Literal["encoded", "hw", "hwc", "chw"]
_MIN_SIDE = 4


def image_extension(data: bytes) -> str | None:
    """The file extension of encoded image bytes (``jpg``, ``png``, ...), None if unknown."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, extension in IMAGE_FORMATS:
        if data.startswith(magic):
            return extension
    return None


def pil() -> Any:
    """Pillow's ``Image`` module, with an install hint when Pillow is missing."""
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("drawing and writing images needs Pillow: pip install Pillow") from exc
    return Image


@dataclass(frozen=True)
class ImageColumn:
    """A column holding one image per row and how its rows are laid out."""

    name: str
    layout: Layout

    def to_pil(self, value: Any) -> Any:
        """A row as a Pillow image (RGB, RGBA or L). Encoded bytes are opened lazily by Pillow
        (call ``.draft``/``.thumbnail`` before pixels are needed for a fast, reduced decode)."""
        image = pil()
        if self.layout == "encoded":
            return image.open(io.BytesIO(bytes(value)))
        array = np.asarray(value)
        if self.layout == "chw":
            array = np.moveaxis(array, 0, -1)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        return image.fromarray(np.ascontiguousarray(array))

    def extension(self, value: Any) -> str:
        """The extension a row is written with: an encoded row's own format, else ``png``."""
        if self.layout != "encoded":
            return "png"
        return image_extension(bytes(value[:16])) or "bin"

    def file_bytes(self, value: Any) -> bytes:
        """A row as the bytes of a viewable file: encoded rows as stored, arrays as PNG."""
        if self.layout == "encoded":
            return bytes(value)
        out = io.BytesIO()
        self.to_pil(value).save(out, format="PNG", compress_level=1)
        return out.getvalue()


@dataclass(frozen=True)
class LabelColumn:
    """A label column and the class names that go with it (``metadata["classes"]``)."""

    name: str
    classes: tuple[str, ...] | None

    def class_name(self, value: Any) -> str:
        """The class name of a label: the name at that index when the file lists classes,
        else the label itself as text."""
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", "replace")
        if isinstance(value, str):
            return value
        index = int(value)
        if self.classes is not None and 0 <= index < len(self.classes):
            return self.classes[index]
        return str(index)


def _array_layout(column_type: Array) -> Layout | None:
    """How a uint8 array column's rows lie as pictures; None when they are not (sides of at
    least 4 pixels: a (512, 2) table of bytes is not an image)."""
    if column_type.numpy_dtype != np.uint8:
        return None
    shape = column_type.shape
    if len(shape) == 2 and min(shape) >= _MIN_SIDE:
        return "hw"
    if len(shape) == 3:
        if 1 <= shape[2] <= 4 and min(shape[:2]) >= _MIN_SIDE:
            return "hwc"
        if shape[0] in (1, 3, 4) and min(shape[1:]) >= _MIN_SIDE:
            return "chw"
    return None


def _encoded_rows(ds: Dataset, name: str) -> bool:
    """Whether the first rows of a bytes column are encoded images."""
    sample = ds.read(slice(0, min(len(ds), 8)), [name])[name]
    rows = [bytes(r[:16]) for r in sample if len(r)]
    return bool(rows) and all(image_extension(r) is not None for r in rows)


def _image_column(ds: Dataset, name: str) -> ImageColumn | None:
    """Column ``name`` as an image column, None when it does not hold images."""
    kind = ds.schema[name].type
    if isinstance(kind, Array):
        layout = _array_layout(kind)
        return None if layout is None else ImageColumn(name, layout)
    if isinstance(kind, Bytes) and len(ds) and _encoded_rows(ds, name):
        return ImageColumn(name, "encoded")
    return None


def image_columns(ds: Dataset, names: Sequence[str] | None = None) -> list[ImageColumn]:
    """Every column that holds images (of ``names``, default all), in the file's order; only
    those columns' first rows are read."""
    wanted = ds.schema.names if names is None else [n for n in ds.schema.names if n in names]
    found = (_image_column(ds, name) for name in wanted)
    return [image for image in found if image is not None]


def find_image_column(ds: Dataset, column: str | None = None) -> ImageColumn:
    """The image column named ``column``, else the first one; a BaleError naming the file,
    its columns and what an image column is when there is none (or ``column`` is not one)."""
    expected = (
        "JPEG/PNG/GIF/BMP/WebP/TIFF bytes, or uint8 arrays shaped (H, W), (H, W, 1|3|4) or "
        "(1|3|4, H, W)"
    )
    if column is not None:
        if column not in ds.schema:
            raise BaleError(f"no column {column!r}; columns are {ds.schema.names}", path=ds.path)
        image = _image_column(ds, column)
        if image is not None:
            return image
        raise BaleError(
            f"column {column!r} ({ds.schema.describe()[column]}) does not hold images: "
            f"expected {expected}",
            path=ds.path,
            column=column,
        )
    # The first that holds images: the columns after it are not read.
    first = next(filter(None, (_image_column(ds, name) for name in ds.schema.names)), None)
    if first is None:
        raise BaleError(
            f"no column holds images (columns: {ds.schema.describe()}); expected {expected}",
            path=ds.path,
        )
    return first


def label_columns(ds: Dataset) -> list[str]:
    """Columns that can be labels: scalar integers and strings."""
    out = []
    for column in ds.schema:
        kind = column.type
        if isinstance(kind, String) or (
            isinstance(kind, Array) and not kind.shape and kind.numpy_dtype.kind in "iub"
        ):
            out.append(column.name)
    return out


def find_label_column(
    ds: Dataset, column: str | None = None, exclude: Sequence[str] = ()
) -> LabelColumn | None:
    """The label column named ``column``, else one named like a label (``LABEL_NAMES``), else
    None; with the file's class names when ``metadata["classes"]`` is a list of strings."""
    candidates = [n for n in label_columns(ds) if n not in exclude]
    if column is not None:
        if column not in candidates:
            raise BaleError(
                f"column {column!r} cannot be a label: expected a scalar integer or string "
                f"column, one of {candidates}",
                path=ds.path,
                column=column,
            )
        name: str | None = column
    else:
        lowered = {n.lower(): n for n in candidates}
        name = next((lowered[n] for n in LABEL_NAMES if n in lowered), None)
    if name is None:
        return None
    classes = ds.metadata.get("classes")
    names = (
        tuple(str(c) for c in classes)
        if isinstance(classes, list) and isinstance(ds.schema[name].type, Array)
        else None
    )
    return LabelColumn(name, names)
