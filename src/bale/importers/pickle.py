"""Python pickles as RowSources, only when trusted: unpickling runs code chosen by the file.

A pickle cannot be read in parts, so the whole file is loaded once, at construction, and kept:
memory is about the pickle's size (up to twice that for a list of row dicts, whose values are
gathered into column arrays). Accepted shapes:

* a dict of columns: ``{"x": array_or_list, "y": ...}``
* a list (or tuple) of row dicts: ``[{"x": ..., "y": ...}, ...]``
* a tuple of arrays, read as columns: ``(X, y)`` gives ``x`` and ``y``; 3 or more give ``f0``...
* a single array, or a list of rows (arrays, numbers, str, bytes): one column ``x``
* a pandas DataFrame (pandas must be installed to unpickle it): one column per DataFrame column

Files compressed with gzip, bz2, xz or zstd (as pandas' ``to_pickle("x.pkl.gz")`` writes them)
are recognised by their first bytes.

>>> src = PickleSource("train.pkl", trust=True)    # doctest: +SKIP
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import pickle
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bale.errors import BaleError, CorruptFileError, SchemaError
from bale.format.schema import Bytes, ColumnType, String
from bale.importers.base import RowSource, SourceBatch
from bale.importers.columns import (
    FieldColumn,
    checked_range,
    checked_rows,
    field_columns,
    field_values,
    rows_nbytes_hint,
)

__all__ = ["PickleSource"]

Values = np.ndarray | list[Any]  # an array, or a list of str / bytes


def _open_maybe_compressed(path: str) -> io.BufferedIOBase:
    with open(path, "rb") as fp:
        magic = fp.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")
    if magic.startswith(b"BZh"):
        return bz2.open(path, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(path, "rb")
    if magic.startswith(b"\x28\xb5\x2f\xfd"):
        import zstandard  # a bale dependency

        return zstandard.open(path, "rb")  # type: ignore[no-any-return]
    return open(path, "rb")


def _load(path: str) -> Any:
    try:
        with _open_maybe_compressed(path) as fp:
            return pickle.load(fp)
    except (ModuleNotFoundError, AttributeError) as exc:
        raise BaleError(
            f"the pickle refers to code that is not importable here ({exc}); install the "
            "package it needs (e.g. pandas for a DataFrame) or convert it where that code runs",
            path=path,
        ) from None
    except _damage_errors() as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise CorruptFileError(
            f"not a readable pickle ({type(exc).__name__}: {exc}); a truncated copy?", path=path
        ) from None


def _damage_errors() -> tuple[type[Exception], ...]:
    """What unpickling a damaged (or damaged compressed) file raises. zstandard's error counts
    once a .zst pickle has imported it: this runs only while an exception is being matched, so
    reading plain pickles never imports zstandard."""
    errors: tuple[type[Exception], ...] = (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        IndexError,
        OSError,  # gzip.BadGzipFile and bz2's "Invalid data stream"
        lzma.LZMAError,
    )
    zstandard = sys.modules.get("zstandard")
    return (*errors, zstandard.ZstdError) if zstandard is not None else errors


def _from_pandas(obj: Any) -> bool:
    module = type(obj).__module__
    return module == "pandas" or module.startswith("pandas.")


def _is_dataframe(obj: Any) -> bool:
    return _from_pandas(obj) and type(obj).__name__ == "DataFrame"


def _to_values(name: str, value: Any, path: str) -> Values:
    """One column's rows as an array, or a list when the rows are str or bytes."""
    if _from_pandas(value) and hasattr(value, "to_numpy"):
        value = value.to_numpy()
    if isinstance(value, np.ndarray) and value.dtype != object:
        if value.ndim == 0:
            raise SchemaError("a 0-d array has no rows", path=path, column=name)
        return value
    if isinstance(value, (str, bytes)) or not isinstance(value, (np.ndarray, list, tuple)):
        raise SchemaError(
            f"expected an array or a list of rows, got {type(value).__name__}",
            path=path,
            column=name,
        )
    items = list(value)
    if items and all(isinstance(v, str) for v in items):
        return items
    if items and all(isinstance(v, (bytes, bytearray)) for v in items):
        return [bytes(v) for v in items]
    types = sorted({type(v).__name__ for v in items})
    if any(isinstance(v, (str, bytes, bytearray)) for v in items):
        # np.asarray would turn None or NaN next to strings into the text "None"/"nan"
        raise SchemaError(
            f"rows mix types {types} (missing values? fill them in first)", path=path, column=name
        )
    try:
        array = np.asarray(items) if items else np.empty(0)
    except ValueError:
        array = np.empty(0, dtype=object)  # ragged: reported below
    if array.dtype == object:
        shapes = [np.shape(v) for v in items]
        first_odd = next((i for i, s in enumerate(shapes) if s != shapes[0]), None)
        if first_odd is not None:
            detail = f"row 0 has shape {shapes[0]} but row {first_odd} has {shapes[first_odd]}"
        elif len(types) > 1:
            detail = f"rows mix types {types} (missing values? fill them in first)"
        else:
            detail = f"values of type {types[0]} are neither numbers nor arrays"
        raise SchemaError(f"rows cannot form one array column: {detail}", path=path, column=name)
    return array


def _rows_to_columns(rows: Sequence[Any], path: str) -> dict[str, Any]:
    keys = list(rows[0].keys())
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or list(row.keys()) != keys:
            got = sorted(map(str, row.keys())) if isinstance(row, Mapping) else type(row).__name__
            raise SchemaError(
                f"row dicts must all have the same keys: row 0 has {sorted(map(str, keys))}, "
                f"row {i} has {got}",
                path=path,
                rows=(i, i + 1),
            )
    return {str(k): [row[k] for row in rows] for k in keys}


def _columns_of(obj: Any, path: str) -> tuple[str, dict[str, Any]]:
    """(a name for the layout, column name -> raw values)."""
    if _is_dataframe(obj):
        return "DataFrame", {str(c): obj[c] for c in obj.columns}
    if isinstance(obj, Mapping):
        return "dict of columns", {str(k): v for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return "array", {"": obj} if obj.dtype.names else {"x": obj}
    if isinstance(obj, (list, tuple)):
        if not obj:
            raise SchemaError("the pickle holds an empty sequence: no rows", path=path)
        if all(isinstance(r, Mapping) for r in obj):
            return "rows of dicts", _rows_to_columns(obj, path)
        if isinstance(obj, tuple) and all(
            isinstance(v, (np.ndarray, list)) and np.ndim(v) >= 1 for v in obj
        ):
            names = ["x", "y"] if len(obj) == 2 else [f"f{i}" for i in range(len(obj))]
            return "tuple of columns", dict(zip(names, obj, strict=True))
        return "list of rows", {"x": list(obj)}
    raise SchemaError(
        f"a pickled {type(obj).__module__}.{type(obj).__name__} is not a shape bale imports; "
        "expected a dict of columns, a list of row dicts, a tuple (X, y) of arrays, an array, "
        "or a pandas DataFrame",
        path=path,
    )


class PickleSource(RowSource):
    """Rows of a pickle file. Refuses unless ``trust=True``: unpickling runs whatever code the
    file names, so only open pickles you made or trust (the command line asks for
    ``--trust-pickle``)."""

    def __init__(self, path: str | os.PathLike[str], trust: bool = False) -> None:
        self.path = os.fspath(path)
        if not trust:
            raise BaleError(
                "refusing to unpickle: loading a pickle runs arbitrary code chosen by whoever "
                "made the file. If you made it or trust its source, pass trust=True "
                "(`bale pack --trust-pickle`)",
                path=self.path,
            )
        layout, raw = _columns_of(_load(self.path), self.path)
        self._layout = layout
        self._values: dict[str, Values] = {}
        self._columns: list[tuple[str, FieldColumn]] = []  # (values key, column)
        for key, value in raw.items():
            values = _to_values(key or "x", value, self.path)
            self._values[key] = values
            if isinstance(values, list):
                kind: ColumnType = String() if values and isinstance(values[0], str) else Bytes()
                self._columns.append((key, FieldColumn(key, None, kind)))
            else:
                for c in field_columns(key, values.dtype, values.shape[1:], path=self.path):
                    self._columns.append((key, c))
        lengths = {k or "x": len(v) for k, v in self._values.items()}
        if len(set(lengths.values())) > 1:
            raise SchemaError(f"columns have different numbers of rows: {lengths}", path=self.path)
        if not lengths:
            raise SchemaError("the pickle holds no columns", path=self.path)
        self._num_rows = next(iter(lengths.values()))

    @property
    def num_rows(self) -> int:
        return self._num_rows

    @property
    def column_types(self) -> Mapping[str, ColumnType] | None:
        if any(c.type is None for _, c in self._columns):
            return None  # only the values can tell (see ArraySource.column_types)
        return {c.name: c.type for _, c in self._columns if c.type is not None}

    @property
    def metadata(self) -> dict[str, Any]:
        return {"source": "pickle", "file": os.path.basename(self.path), "layout": self._layout}

    @property
    def random_access(self) -> bool:
        return True

    @property
    def row_nbytes_hint(self) -> int:
        return rows_nbytes_hint([c for _, c in self._columns])

    def _gather(self, pick: slice | np.ndarray, rows: np.ndarray, first: int) -> SourceBatch:
        if not self._values:
            raise BaleError("the source is closed (its rows were released)", path=self.path)
        columns: dict[str, Any] = {}
        for key, column in self._columns:
            values = self._values[key]
            if isinstance(values, list):
                columns[column.name] = (
                    values[pick] if isinstance(pick, slice) else [values[i] for i in pick]
                )
            else:
                columns[column.name] = field_values(
                    values[pick], column, path=self.path, first_row=first
                )
        return SourceBatch(columns=columns, rows=rows)

    def read(self, start: int, stop: int) -> SourceBatch:
        start, stop = checked_range(start, stop, self.num_rows, self.path)
        return self._gather(slice(start, stop), np.arange(start, stop), start)

    def take(self, rows: Sequence[int] | np.ndarray) -> SourceBatch:
        idx = checked_rows(rows, self.num_rows, self.path)
        return self._gather(idx, idx, 0)

    def close(self) -> None:
        self._values = {}  # the rows are released: a pickle's memory is the point of closing
