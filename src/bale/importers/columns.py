"""What the array importers share: source fields -> bale columns, row-range checks, reads
aligned to the source's chunks, and the ``ArraySource`` base that assembles their batches."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bale.errors import SchemaError
from bale.format.schema import Array, Bytes, ColumnType, String
from bale.importers.base import RowSource, SourceBatch


@dataclass(frozen=True)
class FieldColumn:
    """One output column drawn from a stored array: the whole array, or one field of a
    structured (compound) array. ``type`` is None when only the values can tell (object arrays)."""

    name: str
    field: str | None
    type: ColumnType | None


def column_name(path: str | os.PathLike[str], default: str = "x") -> str:
    """A column name for a single-array file: its stem (``images.npy`` -> ``images``)."""
    stem = Path(os.fspath(path).rstrip("/\\")).stem
    return stem or default


def _column_type(
    dtype: np.dtype[Any], row_shape: tuple[int, ...], *, path: str, column: str
) -> ColumnType | None:
    kind = dtype.kind
    if dtype.type is np.void and dtype.names is None and dtype.subdtype is None:
        if row_shape != ():
            raise SchemaError(
                f"opaque {dtype} values with a per-row shape {row_shape} cannot be stored: a "
                "bytes column holds one value per row",
                path=path,
                column=column,
            )
        return Bytes()  # opaque fixed-size blobs (HDF5 opaque type, np.void)
    if kind in "SUT" or kind == "O":
        if row_shape != ():
            raise SchemaError(
                f"{dtype} values with a per-row shape {row_shape} cannot be stored: bytes and "
                "string columns hold one value per row",
                path=path,
                column=column,
            )
        if kind == "S":
            return Bytes()
        if kind in "UT":
            return String()
        return None  # object arrays: the values decide (bytes or str)
    if kind in "mM":
        raise SchemaError(
            f"{dtype} (dates/times) has no bale dtype; convert it to int64 first "
            "(e.g. arr.astype('datetime64[ns]').view('int64'))",
            path=path,
            column=column,
        )
    try:
        return Array(str(dtype.newbyteorder("=")) if kind not in "biufc" else dtype.name, row_shape)
    except (SchemaError, ValueError, TypeError) as exc:
        raise SchemaError(str(exc), path=path, column=column) from None


def field_columns(
    base: str, dtype: np.dtype[Any], row_shape: tuple[int, ...], *, path: str
) -> list[FieldColumn]:
    """The columns one stored array becomes: one, or one per field of a structured dtype
    (named ``base.field``; ``field`` alone when ``base`` is empty). Subarray fields keep their
    shape: a field ``(3,)f4`` of an array with rows of shape ``()`` gives rows of shape ``(3,)``.
    """
    if dtype.names is None:
        if dtype.subdtype is not None:  # a subarray dtype: its shape belongs to each row
            sub, sub_shape = dtype.subdtype
            return field_columns(base, sub, row_shape + tuple(sub_shape), path=path)
        return [FieldColumn(base, None, _column_type(dtype, row_shape, path=path, column=base))]
    out = []
    for field in dtype.names:
        field_dtype = dtype.fields[field][0]  # type: ignore[index]
        name = f"{base}.{field}" if base else field
        base_dtype, shape = field_dtype, row_shape
        if field_dtype.subdtype is not None:
            base_dtype, sub_shape = field_dtype.subdtype
            shape = row_shape + tuple(sub_shape)
        if base_dtype.names is not None:
            raise SchemaError(
                f"nested structured field {field!r} ({field_dtype}) is not supported; "
                "flatten it first",
                path=path,
                column=name,
            )
        out.append(
            FieldColumn(name, field, _column_type(base_dtype, shape, path=path, column=name))
        )
    return out


def field_values(
    values: np.ndarray, column: FieldColumn, *, path: str, first_row: int
) -> np.ndarray | list[bytes] | list[str]:
    """The rows of one column as bale's writer takes them: arrays for Array columns, lists of
    ``bytes``/``str`` otherwise. Fixed-width bytes lose their trailing NULs, as NumPy shows them."""
    if column.field is not None:
        values = values[column.field]
    if isinstance(column.type, Array):
        return np.ascontiguousarray(values)
    kind = values.dtype.kind
    if kind == "S":
        return [bytes(v) for v in values.tolist()]
    if kind == "V":
        return [v.tobytes() for v in values.reshape(-1)]
    if kind in "UT":
        return [str(v) for v in values.tolist()]
    want = column.type.kind if column.type is not None else None  # None: bytes or str
    out: list[Any] = []
    for i, item in enumerate(values.reshape(-1).tolist()):
        if isinstance(item, np.ndarray) and item.dtype == np.uint8:
            item = item.tobytes()  # HDF5/zarr variable-length uint8 arrays: blobs
        elif isinstance(item, (bytearray, memoryview)):
            item = bytes(item)
        if want == "bytes":
            ok = isinstance(item, bytes)
        elif want == "string":
            ok = isinstance(item, str)
        else:
            ok = isinstance(item, (bytes, str))
        if not ok:
            raise SchemaError(
                f"expected {want or 'bytes or str'} values, got {type(item).__name__}",
                path=path,
                column=column.name,
                rows=(first_row + i, first_row + i + 1),
            )
        out.append(item)
    return out


def rows_nbytes_hint(columns: Sequence[FieldColumn], variable_guess: int = 1 << 10) -> int:
    """About how many bytes one row takes: exact for arrays, a guess for bytes/strings."""
    total = 0
    for c in columns:
        total += c.type.row_nbytes if isinstance(c.type, Array) else variable_guess
    return max(total, 1)


def clashing_names(columns: Mapping[str, Sequence[FieldColumn]]) -> list[str]:
    """Column names given by more than one field (``a/b`` and ``a.b`` both become ``a.b``)."""
    names = [c.name for cs in columns.values() for c in cs]
    return sorted({n for n in names if names.count(n) > 1})


def checked_range(start: int, stop: int, num_rows: int, path: str) -> tuple[int, int]:
    """``(start, stop)`` as ints, or IndexError naming the file when outside ``0..num_rows``."""
    start, stop = int(start), int(stop)
    if not 0 <= start <= stop <= num_rows:
        raise IndexError(f"{path}: rows {start}..{stop} are outside 0..{num_rows} (or reversed)")
    return start, stop


def checked_rows(rows: Sequence[int] | np.ndarray, num_rows: int, path: str) -> np.ndarray:
    """Row numbers as an int64 array, or IndexError naming the file and the first bad row."""
    out = np.asarray(rows, dtype=np.int64).reshape(-1)
    bad = (out < 0) | (out >= num_rows)
    if bad.any():
        raise IndexError(f"{path}: row {int(out[bad][0])} is outside 0..{num_rows}")
    return out


def select_common_length(
    shapes: Mapping[str, tuple[int, ...]], nbytes: Mapping[str, int]
) -> tuple[list[str], dict[str, list[int]]]:
    """Which arrays of a container become columns when the user named none: the largest array
    (by bytes) sets the row count, and every array with that first dimension is kept, in the
    given order. Returns the kept names and the skipped ones with their shapes."""
    candidates = {n: s for n, s in shapes.items() if len(s) >= 1}
    if not candidates:
        return [], {n: list(s) for n, s in shapes.items()}
    largest = max(candidates, key=lambda n: (nbytes.get(n, 0), candidates[n][0]))
    length = candidates[largest][0]
    kept = [n for n, s in candidates.items() if s[0] == length]
    skipped = {n: list(s) for n, s in shapes.items() if n not in kept}
    return kept, skipped


class AlignedRangeReader:
    """Reads row ranges of one chunked array, widened to whole chunks, keeping the last chunk
    read: consecutive ranges that split a chunk decompress it once, not twice.

    ``fetch(a, b)`` returns rows ``a..b`` of the array (any array-like with slicing).
    """

    def __init__(
        self, fetch: Callable[[int, int], np.ndarray], chunk_rows: int, num_rows: int
    ) -> None:
        self._fetch = fetch
        self._chunk = max(int(chunk_rows), 1)
        self._num_rows = num_rows
        self._cached: tuple[int, int, np.ndarray] | None = None

    def read(self, start: int, stop: int) -> np.ndarray:
        if start == stop:
            return self._fetch(start, stop)
        parts = []
        pos = start
        if self._cached is not None:
            c0, c1, block = self._cached
            if c0 <= pos < c1:
                end = min(stop, c1)
                parts.append(block[pos - c0 : end - c0])
                pos = end
        if pos < stop:
            c = self._chunk
            a = pos // c * c
            b = min(-(-stop // c) * c, self._num_rows)
            block = self._fetch(a, b)
            parts.append(block[pos - a : stop - a])
            last = (b - 1) // c * c
            self._cached = (last, b, block[last - a :].copy())
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def clear(self) -> None:
        self._cached = None


class ArraySource(RowSource):
    """A RowSource whose columns come from stored arrays (npy, npz, HDF5, zarr, bcolz):
    subclasses set ``_num_rows`` and ``_columns`` (stored array -> the bale columns it becomes)
    and build their batches with ``_batch``."""

    _num_rows: int
    _columns: Mapping[str, Sequence[FieldColumn]]

    @property
    def num_rows(self) -> int:
        return self._num_rows

    @property
    def column_types(self) -> Mapping[str, ColumnType] | None:
        """Every column's type, or None when only the values can tell one of them (object
        arrays): a partial mapping would leave that column out of the file."""
        columns = [c for cs in self._columns.values() for c in cs]
        if any(c.type is None for c in columns):
            return None
        return {c.name: c.type for c in columns if c.type is not None}

    @property
    def row_nbytes_hint(self) -> int:
        return rows_nbytes_hint([c for cs in self._columns.values() for c in cs])

    def _batch(
        self, values_of: Callable[[str], np.ndarray], rows: np.ndarray, first_row: int
    ) -> SourceBatch:
        """A batch from ``values_of(array)``, the rows read from each stored array in turn."""
        columns: dict[str, Any] = {}
        for key, cols in self._columns.items():
            values = values_of(key)
            for c in cols:
                columns[c.name] = field_values(values, c, path=self.path, first_row=first_row)
        return SourceBatch(columns=columns, rows=rows)
