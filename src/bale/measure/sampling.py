"""Sample batches for the codec advisor: evenly spread row groups of a .bale file, or evenly
spread runs of rows from an importer's source."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from bale._core.columns import concat_values, values_nbytes
from bale._core.dataset import Dataset, reader_of
from bale.errors import BaleError

if TYPE_CHECKING:
    from bale.importers.base import RowSource

__all__ = ["DEFAULT_SAMPLE_BYTES", "sample_file", "sample_source"]

#: The most raw bytes of one column a sample holds by default (and the advisor measures).
DEFAULT_SAMPLE_BYTES: Final[int] = 16 << 20


def sample_file(
    path: str | os.PathLike[str],
    *,
    columns: Sequence[str] | None = None,
    rows: int | None = None,
    max_bytes: int = DEFAULT_SAMPLE_BYTES,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A sample batch from a .bale file: whole row groups spread evenly over the file, as many
    as keep the largest column under about ``max_bytes`` of raw data (and at most ``rows``).
    ``path`` may be a URL, read with ``storage_options`` (see ``bale.open``)."""
    if rows is not None and rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    with Dataset(path, cache_bytes=0, storage_options=storage_options) as ds:
        reader_of(ds).check_columns(columns)
        names = list(columns) if columns is not None else ds.schema.names
        groups = ds.num_row_groups
        if not groups:
            raise BaleError("the file has no rows to sample", path=ds.path)
        raw = ds.index.blocks["raw_size"]  # (groups, columns)
        per_column = [float(raw[:, ds.schema.index(n)].mean()) for n in names]
        keep = math.ceil(max_bytes / max(max(per_column), 1.0))
        if rows is not None:
            keep = min(keep, math.ceil(rows / (len(ds) / groups)))
        keep = max(1, min(groups, keep))
        picked = np.unique(np.linspace(0, groups - 1, keep).round().astype(int))
        parts = [ds.read_row_group(int(g), names) for g in picked]
    batch = {name: concat_values([p[name] for p in parts]) for name in names}
    if rows is not None:
        batch = {name: value[:rows] for name, value in batch.items()}
    return batch


def sample_source(
    source: RowSource,
    *,
    columns: Sequence[str] | None = None,
    max_bytes: int = DEFAULT_SAMPLE_BYTES,
    pieces: int = 8,
) -> dict[str, Any]:
    """A sample batch from an importer's source (``bale.importers.open_source``): ``pieces``
    contiguous runs of rows spread evenly over it, keeping the largest column under about
    ``max_bytes``. Rows the source cannot read are left out."""
    n = source.num_rows
    if n < 1:
        raise BaleError("the source has no rows to sample", path=source.path)
    probe = source.read(0, min(n, 16)).columns
    names = list(columns) if columns is not None else list(probe)
    unknown = [c for c in names if c not in probe]
    if unknown:
        raise BaleError(f"no columns {unknown}; the source has {list(probe)}", path=source.path)
    row_bytes = max(values_nbytes(probe[c]) / max(len(probe[c]), 1) for c in names)
    want = max(1, min(n, int(max_bytes // max(row_bytes, 1.0))))
    pieces = max(1, min(pieces, want))
    run = math.ceil(want / pieces)
    starts = np.unique(np.linspace(0, max(n - run, 0), pieces).round().astype(int))
    parts = []
    for start in starts:
        batch = source.read(int(start), min(int(start) + run, n))
        if len(batch):
            parts.append({c: batch.columns[c] for c in names})
    if not parts:
        raise BaleError("no row of the sample could be read", path=source.path)
    return {c: concat_values([p[c] for p in parts]) for c in names}
