"""zarr stores as RowSources (via zarr-python 3): an array is one column; a group, one per array.

Reads zarr v3 stores and the v2 stores zarr-python 3 opens. Column names are array paths inside
the group with ``/`` replaced by ``.`` (``train/images`` -> ``train.images``); a lone array is
named after the store's folder. Reads are widened to whole chunks (whole shards when the array
is sharded) along the first dimension, keeping the last one for the next range.

>>> src = ZarrSource("dataset.zarr")     # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from bale.errors import BaleError, CorruptFileError, SchemaError
from bale.format.schema import Bytes, String
from bale.importers.base import SourceBatch
from bale.importers.columns import (
    AlignedRangeReader,
    ArraySource,
    FieldColumn,
    checked_range,
    clashing_names,
    column_name,
    field_columns,
    select_common_length,
)

__all__ = ["ZarrSource"]


def _zarr() -> Any:
    try:
        import zarr
    except ImportError as exc:
        raise BaleError(
            f"reading zarr stores needs zarr-python 3, which is not installed ({exc}); "
            "install it with `pip install 'zarr>=3'`"
        ) from None
    return zarr


def _array_columns(name: str, array: Any, where: str) -> list[FieldColumn]:
    data_type = type(array.metadata.dtype).__name__  # a zarr ZDType, v2 and v3 alike
    if data_type == "VariableLengthBytes":
        return [FieldColumn(name, None, Bytes())]
    if data_type == "VariableLengthUTF8":
        return [FieldColumn(name, None, String())]
    return field_columns(name, np.dtype(array.dtype), tuple(array.shape[1:]), path=where)


def _describe_dtype(array: Any) -> str:
    data_type = type(array.metadata.dtype).__name__
    if data_type.startswith("VariableLength"):
        return data_type
    return str(np.dtype(array.dtype))


def _chunk_rows(array: Any) -> int:
    shards = getattr(array, "shards", None)
    rows = shards[0] if shards else array.chunks[0]
    return max(int(rows), 1)


class ZarrSource(ArraySource):
    """Rows of a zarr array or group. For a group: ``arrays`` (paths inside it) as columns, or
    when None, the largest array and every other array with the same first dimension (the rest
    are listed under ``metadata["skipped"]``).

    Missing chunks read as the array's fill value, as zarr defines them.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, arrays: Sequence[str] | None = None
    ) -> None:
        self.path = os.fspath(path)
        if isinstance(arrays, str):
            arrays = [arrays]
        zarr = _zarr()
        try:
            node = zarr.open(self.path, mode="r")
        except (FileNotFoundError, KeyError) as exc:
            raise BaleError(f"no zarr array or group here ({exc})", path=self.path) from None
        except (ValueError, TypeError, OSError) as exc:
            raise CorruptFileError(f"not a readable zarr store: {exc}", path=self.path) from None
        found: dict[str, Any] = {}
        self._skipped: dict[str, list[int]] = {}
        if isinstance(node, zarr.Array):
            if arrays is not None:
                raise SchemaError("arrays=[...] names arrays of a group; this is an array")
            if node.ndim == 0:
                raise SchemaError("a 0-d zarr array has no rows", path=self.path)
            self._kind = "array"
            found[""] = node
            names = [""]
            self._column_names = {"": column_name(self.path)}
        else:
            self._kind = "group"
            if arrays is None:
                for name, obj in sorted(node.members(max_depth=None), key=lambda m: m[0]):
                    if isinstance(obj, zarr.Array):
                        found[name] = obj
                shapes = {n: tuple(a.shape) for n, a in found.items()}
                nbytes = {n: int(a.nbytes) for n, a in found.items()}
                names, self._skipped = select_common_length(shapes, nbytes)
                if not names:
                    raise SchemaError(
                        "the group holds no array with rows; arrays found: "
                        f"{sorted(shapes) or 'none'}",
                        path=self.path,
                    )
            else:
                names = []
                for requested in arrays:
                    key = requested.strip("/")
                    try:
                        obj = node[key]
                    except KeyError:
                        raise SchemaError(
                            f"array {requested!r} is missing from the group", path=self.path
                        ) from None
                    if not isinstance(obj, zarr.Array) or obj.ndim == 0:
                        raise SchemaError(
                            f"{requested!r} is not an array with rows", path=self.path
                        )
                    found[key] = obj
                    names.append(key)
            self._column_names = {n: n.replace("/", ".") for n in names}
        lengths = {n or self.path: int(found[n].shape[0]) for n in names}
        if len(set(lengths.values())) > 1:
            raise SchemaError(
                f"arrays have different numbers of rows: {lengths}; pass arrays=[...] with "
                "ones that belong together",
                path=self.path,
            )
        self._num_rows = int(found[names[0]].shape[0])
        self._columns = {
            n: _array_columns(self._column_names[n], found[n], f"{self.path}/{n}") for n in names
        }
        clashes = clashing_names(self._columns)
        if clashes:
            raise SchemaError(
                f"array paths give clashing column names {clashes} once '/' becomes '.'",
                path=self.path,
            )
        self._info = {
            n: {
                "dtype": _describe_dtype(found[n]),
                "shape": list(found[n].shape),
                "chunks": list(found[n].chunks),
                "zarr_format": int(found[n].metadata.zarr_format),
            }
            for n in names
        }
        self._attrs = dict(node.attrs)
        self._arrays: dict[str, Any] = found
        self._readers: dict[str, AlignedRangeReader] = {}

    @property
    def metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": "zarr",
            "store": os.path.basename(self.path.rstrip("/")),
            "kind": self._kind,
            "arrays": {n or ".": info for n, info in self._info.items()},
        }
        if self._attrs:
            out["attrs"] = self._attrs
        if self._skipped:
            out["skipped"] = self._skipped
        return out

    @property
    def picklable(self) -> bool:
        return True  # array handles are dropped and the store reopened by path

    def _array(self, name: str) -> Any:
        array = self._arrays.get(name)
        if array is None:
            node = _zarr().open(self.path, mode="r")
            array = node if name == "" else node[name]
            self._arrays[name] = array
        return array

    def _reader(self, name: str) -> AlignedRangeReader:
        reader = self._readers.get(name)
        if reader is None:
            array = self._array(name)
            reader = AlignedRangeReader(
                lambda a, b: np.asarray(array[a:b]), _chunk_rows(array), self._num_rows
            )
            self._readers[name] = reader
        return reader

    def read(self, start: int, stop: int) -> SourceBatch:
        start, stop = checked_range(start, stop, self.num_rows, self.path)

        def values_of(name: str) -> np.ndarray:
            try:
                return self._reader(name).read(start, stop)
            except BaleError:
                raise
            except Exception as exc:  # zarr and its codecs raise many kinds of error
                raise CorruptFileError(
                    f"array {name or '.'!r} could not be read: {type(exc).__name__}: {exc}",
                    path=self.path,
                    rows=(start, stop),
                ) from None

        return self._batch(values_of, np.arange(start, stop), start)

    def close(self) -> None:
        self._readers = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_arrays={}, _readers={})
        return state
