"""Describing a file from its footer alone: rows, columns, codecs, sizes, metadata (`bale info`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from bale._core.dataset import Dataset, reader_of
from bale.codecs import codec_spec
from bale.format.schema import Array


def describe(
    path: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A JSON-ready description of the file at ``path``; reads only its footer. ``path`` may be
    a URL, read with ``storage_options`` (see ``bale.open``): the description shows it without
    credentials and holds no option.

    >>> describe("train.bale")["columns"][0]  # doctest: +SKIP
    {'name': 'image', 'kind': 'array', 'codec': 'none', 'raw_bytes': ..., 'stored_bytes': ...,
     'ratio': 1.0, 'dtype': 'uint8', 'shape': [224, 224, 3]}
    """
    with Dataset(path, storage_options=storage_options) as ds:
        return _description(ds)


def _description(ds: Dataset) -> dict[str, Any]:
    index = ds.index
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
        }
        if isinstance(column.type, Array):
            entry["dtype"] = column.type.dtype
            entry["shape"] = list(column.type.shape)
        columns.append(entry)
    return {
        "path": ds.path,
        "rows": len(ds),
        "row_groups": ds.num_row_groups,
        "file_bytes": reader_of(ds).source.size(),
        "columns": columns,
        "metadata": ds.metadata,
    }
