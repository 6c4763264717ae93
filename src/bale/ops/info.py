"""Describing a file (`bale info`): rows, columns, codecs, sizes and metadata from its footer, and
from a little of its data the class counts of label columns and the sizes of sampled images."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bale._core.dataset import Dataset, reader_of
from bale.codecs import codec_spec
from bale.format.schema import Array, Bytes, Column, String, Unsupported
from bale.images import image_size

__all__ = ["IMAGE_SAMPLE", "LABEL_NAMES", "MAX_CLASSES", "MAX_UNNAMED_LABELS", "describe"]

#: Columns counted as labels whatever their type (a scalar integer column is counted anyway).
LABEL_NAMES = frozenset({"label", "labels", "target", "targets", "y", "class", "category"})
#: More distinct values than this and a column is not a label (an id, a timestamp): not counted.
MAX_CLASSES = 10_000
#: Without a column named like a label, the first few scalar integer columns are counted.
MAX_UNNAMED_LABELS = 3
#: Rows of each bytes column whose headers are read to tell images and their sizes.
IMAGE_SAMPLE = 32
#: Metadata keys that may hold the class names of integer labels (``classes[label]``).
CLASS_NAME_KEYS = ("classes", "class_names", "label_names")

_IMAGE_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}


def describe(
    path: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    footer_only: bool = False,
    image_sample: int = IMAGE_SAMPLE,
) -> dict[str, Any]:
    """A JSON-ready description of the file at ``path``. ``path`` may be a URL, read with
    ``storage_options`` (see ``bale.open``): the description shows it without credentials and
    holds no option.

    From the footer: rows, row groups, file size, and per column its type, codec, raw and
    stored bytes, ratio and share of the file; the metadata as stored. Unless ``footer_only``,
    also ``"labels"``: the class counts of each label column (the scalar columns named label,
    labels, target, y, class or category; without one, the first ``MAX_UNNAMED_LABELS`` scalar
    integer or boolean columns; read whole, only those columns; a column with more than
    ``MAX_CLASSES`` values, or an unnamed one of mostly distinct values, is no label), with
    names from ``metadata["classes"]``; and ``"images"``: for bytes columns holding JPEG or PNG, the
    formats and sizes of ``image_sample`` rows spread over the file, from their headers: width
    and height (min, median, max of each) and the smallest, median and largest image by pixels.

    >>> describe("train.bale")["labels"]["label"]["counts"][0]  # doctest: +SKIP
    {'value': 3, 'name': 'cat', 'rows': 1300}
    """
    with Dataset(path, storage_options=storage_options, cache_bytes=0) as ds:
        description = _from_footer(ds)
        if not footer_only:
            description["labels"] = _labels(ds)
            description["images"] = _images(ds, image_sample)
        return description


def _from_footer(ds: Dataset) -> dict[str, Any]:
    index = ds.index
    file_bytes = reader_of(ds).source.size()
    rows = len(ds)
    columns = []
    for position, column in enumerate(ds.schema.columns):
        blocks = index.blocks[:, position]
        raw = int(blocks["raw_size"].sum())
        stored = int(blocks["stored_size"].sum())
        codecs = sorted({codec_spec(index.codecs[int(c)]) for c in blocks["codec"]}) or [
            codec_spec(column.codec)
        ]
        entry: dict[str, Any] = {
            "name": column.name,
            "kind": column.type.kind,
            "codec": ", ".join(codecs),
            "raw_bytes": raw,
            "stored_bytes": stored,
            "ratio": round(raw / stored, 3) if stored else None,
            "share": round(stored / file_bytes, 4) if file_bytes else None,
            "stored_bytes_per_row": round(stored / rows, 1) if rows else None,
        }
        if isinstance(column.type, Array):
            entry["dtype"] = column.type.dtype
            entry["shape"] = list(column.type.shape)
        columns.append(entry)
    return {
        "path": ds.path,
        "rows": rows,
        "row_groups": ds.num_row_groups,
        "file_bytes": file_bytes,
        "columns": columns,
        "metadata": ds.metadata,
    }


# -- labels -----------------------------------------------------------------------------------


def _label_like(column: Column) -> bool | None:
    """True for a column named like a label, False for another scalar integer or boolean
    column (counted if it has few values), None for a column never counted."""
    t = column.type
    named = column.name.lower().rsplit(".", 1)[-1].rsplit("/", 1)[-1] in LABEL_NAMES
    if isinstance(t, Array) and t.shape == () and t.numpy_dtype.kind in "iub":
        return named
    if isinstance(t, String) and named:
        return True
    return None


def _labels(ds: Dataset) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = _class_names(ds.metadata)
    kinds = {c.name: _label_like(c) for c in ds.schema.columns}
    chosen = [c for c in ds.schema.columns if kinds[c.name]]
    named = bool(chosen)
    if not chosen:  # a wide table of integers is not a table of labels: a few at most
        chosen = [c for c in ds.schema.columns if kinds[c.name] is False][:MAX_UNNAMED_LABELS]
    for column in chosen:
        counts = _count_values(ds, column.name, named)
        if not counts:
            continue
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], _sort_key(kv[0])))
        numeric = isinstance(column.type, Array)
        use_names = numeric and names is not None and all(_name_of(v, names) for v in counts)
        out[column.name] = {
            "classes": len(counts),
            "names_from": _names_key(ds.metadata) if use_names else None,
            "named_classes": len(names) if use_names and names is not None else None,
            "counts": [
                {
                    "value": value,
                    "name": _name_of(value, names) if use_names and names is not None else None,
                    "rows": rows,
                }
                for value, rows in ordered
            ],
        }
    return out


def _count_values(ds: Dataset, name: str, named: bool) -> Counter[Any] | None:
    """The value counts of one column, read group by group (only this column); None when it
    has too many values to be a label."""
    counts: Counter[Any] = Counter()
    for batch in ds.iter_row_groups([name], threads=2):
        values = batch[name]
        if isinstance(values, np.ndarray):
            unique, n = np.unique(values, return_counts=True)
            counts.update(dict(zip(unique.tolist(), n.tolist(), strict=True)))
        else:
            counts.update(values)
        if len(counts) > MAX_CLASSES:
            return None
    if not named and len(counts) > max(100, len(ds) // 2):
        return None  # mostly distinct: an id or a measurement, not a class
    return counts


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


def _names_key(metadata: Mapping[str, Any]) -> str | None:
    return next((key for key in CLASS_NAME_KEYS if key in metadata), None)


def _class_names(metadata: Mapping[str, Any]) -> dict[int, str] | None:
    """Class number -> name from ``metadata["classes"]`` (a list of names, or a dict of name ->
    number or number -> name); None when there is none."""
    key = _names_key(metadata)
    value = metadata.get(key) if key else None
    if isinstance(value, Sequence) and not isinstance(value, str):
        return {i: str(name) for i, name in enumerate(value)}
    if isinstance(value, Mapping):
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value.values()):
            return {int(v): str(k) for k, v in value.items()}
        if all(isinstance(k, str) and k.lstrip("-").isdigit() for k in value):
            return {int(k): str(v) for k, v in value.items()}
    return None


def _name_of(value: Any, names: dict[int, str] | None) -> str | None:
    if names is None or isinstance(value, bool) or not isinstance(value, int):
        return None
    return names.get(value)


# -- images -----------------------------------------------------------------------------------


def _images(ds: Dataset, sample: int) -> dict[str, Any]:
    """For each bytes column whose sampled rows are mostly JPEG or PNG: formats and sizes."""
    n = len(ds)
    columns = [
        c.name
        for c in ds.schema.columns
        if isinstance(c.type, Bytes) and not isinstance(c.type, Unsupported)
    ]
    if not columns or n == 0 or sample <= 0:
        return {}
    rows = np.unique(np.linspace(0, n - 1, num=min(sample, n)).astype(np.int64))
    batch = ds.take(rows, columns=columns)
    out: dict[str, Any] = {}
    for name in columns:
        summary = _image_summary(batch[name])
        if summary is not None:
            out[name] = {"sampled_rows": len(rows), **summary}
    return out


def _image_summary(values: Sequence[bytes]) -> dict[str, Any] | None:
    formats: Counter[str] = Counter()
    heights: list[int] = []
    widths: list[int] = []
    unreadable = 0
    problem = None
    for data in values:
        kind = next(
            (k for magic, k in _IMAGE_MAGIC.items() if bytes(data[:8]).startswith(magic)), None
        )
        if kind is None:
            continue
        formats[kind] += 1
        if problem is not None:
            continue
        try:
            height, width = image_size(bytes(data))
        except ImportError as exc:  # simplejpeg or Pillow is missing: formats only
            problem = str(exc)
            continue
        except Exception:  # a damaged header: counted, not sized
            unreadable += 1
            continue
        heights.append(height)
        widths.append(width)
    if sum(formats.values()) * 2 < len(values) or not formats:
        return None
    summary: dict[str, Any] = {"images": sum(formats.values()), "formats": dict(formats)}
    if widths:
        summary["sized"] = len(widths)
        summary["width"] = _spread(widths)
        summary["height"] = _spread(heights)
        # Real images' sizes (per-dimension extremes may come from different images)
        ranked = sorted(zip(widths, heights, strict=True), key=lambda wh: (wh[0] * wh[1], wh))
        for key, (width, height) in zip(
            ("smallest", "median_image", "largest"),
            (ranked[0], ranked[len(ranked) // 2], ranked[-1]),
            strict=True,
        ):
            summary[key] = {"width": width, "height": height}
    if unreadable:
        summary["unreadable_headers"] = unreadable
    if problem is not None:
        summary["sizes_unavailable"] = problem
    return summary


def _spread(values: list[int]) -> dict[str, int]:
    array = np.asarray(values)
    return {
        "min": int(array.min()),
        "median": int(np.median(array)),
        "max": int(array.max()),
    }
