"""HDF5 files as RowSources (via h5py): datasets with a shared first dimension become columns.

Column names are dataset paths without the leading ``/`` and with ``/`` replaced by ``.``
(``/train/images`` -> ``train.images``). Reads are widened to whole HDF5 chunks along the first
dimension and the last chunk is kept, so consecutive ranges never decompress a chunk twice.

>>> src = Hdf5Source("data.h5")                                  # doctest: +SKIP
>>> src = Hdf5Source("data.h5", datasets=["/train/x", "/train/y"])  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
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
    field_columns,
    select_common_length,
)
from bale.importers.splits import is_split_name

__all__ = ["Hdf5Source"]

_ATTR_LIMIT = 1 << 16  # attributes bigger than this (as JSON) are left out of the metadata


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:
        raise BaleError(
            f"reading HDF5 files needs h5py, which is not installed ({exc}); "
            "install it with `pip install h5py`"
        ) from None
    # hdf5plugin, when installed, registers the common extra filters (blosc, lz4, zstd...).
    with contextlib.suppress(ImportError):
        import hdf5plugin  # noqa: F401
    return h5py


def _jsonable(value: Any) -> Any:
    """An HDF5 attribute as plain JSON values, or None when it has no JSON form."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return None


def _attrs(obj: Any) -> dict[str, Any]:
    out = {}
    for key in obj.attrs:
        try:
            value = _jsonable(obj.attrs[key])
        except (OSError, TypeError, ValueError):  # an attribute type h5py cannot read
            continue
        if value is not None and len(json.dumps(value)) <= _ATTR_LIMIT:
            out[str(key)] = value
    return out


def _dataset_columns(h5py: Any, name: str, dset: Any, path: str) -> list[FieldColumn]:
    """The columns one dataset becomes; HDF5 strings and variable-length blobs included."""
    where = f"{path}:/{name}"
    dtype = dset.dtype
    row_shape = tuple(dset.shape[1:])
    string_info = h5py.check_string_dtype(dtype)
    if string_info is not None:
        if row_shape:
            raise SchemaError(
                f"string dataset with per-row shape {row_shape}: a string column holds one "
                "value per row",
                path=where,
            )
        return [FieldColumn(name, None, String())]
    vlen_base = h5py.check_vlen_dtype(dtype)
    if vlen_base is not None:
        if np.dtype(vlen_base).itemsize != 1 or row_shape:
            raise SchemaError(
                f"variable-length {vlen_base} sequences have no bale column type (only "
                "variable-length bytes, which become a bytes column)",
                path=where,
            )
        return [FieldColumn(name, None, Bytes())]
    return field_columns(name, dtype, row_shape, path=where)


class Hdf5Source(ArraySource):
    """Rows of an HDF5 file: ``datasets`` (paths inside the file) as columns, or when None, the
    largest dataset and every other dataset with the same first dimension (the rest are listed
    under ``metadata["skipped"]``). Compound datasets give one column per field.

    ``group="train"`` reads only that group: dataset paths are relative to it and so are the
    column names (``x``, not ``train.x``). A file whose top-level groups are named like splits
    (``train``, ``test``, ...) needs ``group=`` or ``datasets=``: packing one split silently
    would drop the others. A 1-D string dataset named ``classes`` (or ``class_names``,
    ``label_names``) that is not a column becomes ``metadata["classes"]``.

    Variable-length and fixed-length string datasets become string columns (decoded as UTF-8),
    variable-length uint8/int8 datasets and opaque datasets become bytes columns.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        datasets: Sequence[str] | None = None,
        group: str | None = None,
    ) -> None:
        self.path = os.fspath(path)
        if isinstance(datasets, str):
            datasets = [datasets]
        h5py = _h5py()
        self._file: Any = None
        self._group = group.strip("/") if group else ""
        try:
            f = self._open()
            top = _chosen_group(h5py, f, self._group, self.path)
            prefix = f"{self._group}/" if self._group else ""
            found: dict[str, Any] = {}

            def visit(name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset):
                    found[prefix + name] = obj

            if datasets is None:
                if not self._group:
                    _refuse_split_groups(h5py, f, self.path)
                top.visititems(visit)
                shapes = {n: tuple(d.shape) for n, d in found.items()}
                nbytes = {
                    n: int(np.prod(d.shape, dtype=np.int64)) * d.dtype.itemsize
                    for n, d in found.items()
                }
                names, self._skipped = select_common_length(shapes, nbytes)
                if not names:
                    raise SchemaError(
                        "the file holds no dataset with rows (no dataset of 1 or more "
                        f"dimensions); datasets found: {sorted(shapes) or 'none'}",
                        path=self.path,
                    )
            else:
                names, self._skipped = [], {}
                for requested in datasets:
                    key = prefix + requested.strip("/")
                    obj = f.get(key)
                    if not isinstance(obj, h5py.Dataset):
                        what = "a group" if obj is not None else "missing"
                        raise SchemaError(
                            f"dataset {requested!r} is {what}; expected a dataset path",
                            path=self.path,
                        )
                    if obj.ndim == 0:
                        raise SchemaError(
                            f"dataset {requested!r} is a scalar: it has no rows", path=self.path
                        )
                    found[key] = obj
                    names.append(key)
            lengths = {n: int(found[n].shape[0]) for n in names}
            if len(set(lengths.values())) > 1:
                raise SchemaError(
                    f"datasets have different numbers of rows: {lengths}; pass datasets=[...] "
                    "with ones that belong together",
                    path=self.path,
                )
            self._num_rows = lengths[names[0]] if names else 0
            self._columns: dict[str, list[FieldColumn]] = {}
            self._info: dict[str, dict[str, Any]] = {}
            self._classes = _class_names(h5py, f, top, names, self._skipped, prefix)
            for name in names:
                dset = found[name]
                column = name.removeprefix(prefix).replace("/", ".")
                cols = _dataset_columns(h5py, column, dset, self.path)
                self._columns[name] = cols
                self._info[name] = {
                    "dtype": _describe_dtype(h5py, dset.dtype),
                    "shape": list(dset.shape),
                    "chunks": list(dset.chunks) if dset.chunks else None,
                    "compression": dset.compression,
                    "attrs": _attrs(dset),
                }
            self._file_attrs = _attrs(f)
        except OSError as exc:
            self.close()
            raise CorruptFileError(f"not a readable HDF5 file: {exc}", path=self.path) from None
        except BaseException:
            self.close()
            raise
        clashes = clashing_names(self._columns)
        if clashes:
            self.close()
            raise SchemaError(
                f"dataset paths give clashing column names {clashes} once '/' becomes '.'; "
                "pass datasets=[...] to choose",
                path=self.path,
            )
        self._readers: dict[str, AlignedRangeReader] = {}

    def _open(self) -> Any:
        if self._file is None:
            self._file = _h5py().File(self.path, "r")
        return self._file

    @property
    def metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": "hdf5",
            "file": os.path.basename(self.path),
            "datasets": {"/" + n: info for n, info in self._info.items()},
        }
        if self._group:
            out["group"] = "/" + self._group
        if self._classes is not None:
            out["classes"] = self._classes
        if self._file_attrs:
            out["attrs"] = self._file_attrs
        if self._skipped:
            out["skipped"] = {"/" + n: shape for n, shape in self._skipped.items()}
        return out

    @property
    def picklable(self) -> bool:
        return True  # the h5py handle is dropped and the file reopened by path

    def _reader(self, name: str) -> AlignedRangeReader:
        reader = self._readers.get(name)
        if reader is None:
            dset = self._open()[name]
            is_string = _h5py().check_string_dtype(dset.dtype) is not None
            view = dset.asstr() if is_string else dset
            chunk_rows = dset.chunks[0] if dset.chunks else 1
            reader = AlignedRangeReader(lambda a, b: view[a:b], chunk_rows, self._num_rows)
            self._readers[name] = reader
        return reader

    def read(self, start: int, stop: int) -> SourceBatch:
        start, stop = checked_range(start, stop, self.num_rows, self.path)

        def values_of(name: str) -> np.ndarray:
            try:
                return self._reader(name).read(start, stop)
            except UnicodeDecodeError as exc:
                raise SchemaError(
                    f"dataset '/{name}' holds strings that are not valid UTF-8 ({exc})",
                    path=self.path,
                    rows=(start, stop),
                ) from None
            except OSError as exc:
                raise _read_error(exc, self.path, name, start, stop) from None

        return self._batch(values_of, np.arange(start, stop), start)

    def close(self) -> None:
        self._readers = {}
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_file=None, _readers={})
        return state


def _chosen_group(h5py: Any, f: Any, group: str, path: str) -> Any:
    """The group datasets are read from: the file, or ``group`` (a SchemaError listing the
    file's groups when it is not one)."""
    if not group:
        return f
    obj = f.get(group)
    if isinstance(obj, h5py.Group):
        return obj
    groups: list[str] = []
    f.visititems(lambda n, o: groups.append("/" + n) if isinstance(o, h5py.Group) else None)
    what = "a dataset" if obj is not None else "missing"
    raise SchemaError(
        f"group {group!r} is {what}; the file's groups are {groups[:20] or 'none'}", path=path
    )


def split_groups(path: str | os.PathLike[str]) -> list[str]:
    """The top-level groups of an HDF5 file named like splits (``train``, ``test``...) and
    holding datasets, when there are two or more (``bale pack FILE.h5 OUT_DIR/`` packs each into
    ``OUT_DIR/NAME.bale``); otherwise ``[]``."""
    h5py = _h5py()
    with h5py.File(os.fspath(path), "r") as f:
        return _split_names(h5py, f)


def _split_names(h5py: Any, f: Any) -> list[str]:
    splits = [
        name
        for name, obj in f.items()
        if isinstance(obj, h5py.Group) and is_split_name(name) and _holds_rows(h5py, obj)
    ]
    return splits if len(splits) >= 2 else []


def _refuse_split_groups(h5py: Any, f: Any, path: str) -> None:
    """Two or more top-level groups named like splits (``train``, ``test``...) holding datasets:
    packing the largest alone would silently drop the others, so ask which one."""
    splits = _split_names(h5py, f)
    if not splits:
        return
    name = os.path.basename(path)
    commands = "; ".join(f"`bale pack {name}:{s} {s}.bale`" for s in splits)
    raise SchemaError(
        f"the file holds the splits {splits} as groups: pack them into a folder, one file per "
        f"split (`bale pack {name} packed/`), or one at a time: {commands} (in Python "
        f"group={splits[0]!r}, or datasets=[...] to choose datasets yourself)",
        path=path,
    )


def _holds_rows(h5py: Any, group: Any) -> bool:
    found: list[str] = []

    def visit(name: str, obj: Any) -> bool | None:
        if isinstance(obj, h5py.Dataset) and obj.ndim >= 1:
            found.append(name)
            return True  # stops the walk
        return None

    group.visititems(visit)
    return bool(found)


_CLASS_NAMES = ("classes", "class_names", "label_names")
_MAX_CLASSES = 1 << 20


def _class_names(
    h5py: Any, f: Any, top: Any, columns: list[str], skipped: dict[str, list[int]], prefix: str
) -> list[str] | None:
    """The class names from a 1-D string/bytes dataset named ``classes`` (``class_names``,
    ``label_names``) in the chosen group or at the file's root that is not a column; it is
    taken out of ``skipped``."""
    for where, base in ((top, prefix), (f, "")):
        for name in _CLASS_NAMES:
            obj = where.get(name)
            key = base + name
            if not isinstance(obj, h5py.Dataset) or key in columns or obj.ndim != 1:
                continue
            if obj.shape[0] > _MAX_CLASSES:
                continue
            is_text = h5py.check_string_dtype(obj.dtype) is not None
            if not (is_text or obj.dtype.kind in "SU"):
                continue
            values = obj.asstr()[:] if is_text else obj[:]
            names = [
                v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values
            ]
            skipped.pop(key, None)
            return names
    return None


def _describe_dtype(h5py: Any, dtype: np.dtype[Any]) -> str:
    string_info = h5py.check_string_dtype(dtype)
    if string_info is not None:
        size = "vlen" if string_info.length is None else f"fixed {string_info.length}-byte"
        return f"{size} {string_info.encoding} string"
    vlen_base = h5py.check_vlen_dtype(dtype)
    if vlen_base is not None:
        return f"vlen {np.dtype(vlen_base)}"
    return str(dtype)


def _read_error(exc: OSError, path: str, name: str, start: int, stop: int) -> BaleError:
    message = str(exc)
    # HDF5 says "required filter ... is not registered" / "can't open directory" (the plugin
    # folder) when a filter is missing; "filter returned failure" means damaged bytes.
    lowered = message.lower()
    if "not registered" in lowered or "can't open directory" in lowered:
        return BaleError(
            f"dataset '/{name}' uses an HDF5 compression filter that is not available "
            f"({message}); `pip install hdf5plugin` (bale loads it when it is installed) or "
            "point HDF5_PLUGIN_PATH at a folder holding the filter",
            path=path,
            rows=(start, stop),
        )
    return CorruptFileError(
        f"dataset '/{name}' could not be read: {message}", path=path, rows=(start, stop)
    )
