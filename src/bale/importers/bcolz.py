"""bcolz carray/ctable directories as RowSources, read from their on-disk layout with blosc2.

bcolz is unmaintained and its builds no longer install; its data files are plain Blosc1
chunks, which python-blosc2 decompresses. The layout read here (bcolz 1.x, "DISK_FORMAT_v1";
the bale repository's docs/LEGACY.md has the table) is:

* a **carray** directory: ``meta/sizes`` (JSON: ``shape``, ``nbytes``, ``cbytes``),
  ``meta/storage`` (JSON: ``dtype``, ``chunklen``, ``cparams``, ``expectedlen``, ``dflt``),
  ``__attrs__`` (JSON user attributes, optional) and ``data/__<i>.blp``, one file per chunk
  of ``chunklen`` rows. Each file is a 16-byte bloscpack header (``b"blpk"``, a version byte,
  3 reserved bytes, an int64 chunk count, always 1) followed by one Blosc1 chunk. The last
  file holds the ``len % chunklen`` "leftover" rows when there are any;
* a **ctable** directory: ``__rootdirs__`` (JSON ``{"names": [...]}``; older releases add
  ``"dirs"``), ``__attrs__``, and one carray directory per column, named after the column.

A chunk that fails to decompress, is missing, truncated or of the wrong size raises
``CorruptFileError`` naming the chunk file and its rows; no row is ever zero-filled. Blosc1
chunks carry no checksum, so damage that still decompresses cannot be detected.

>>> src = BcolzSource("old_images.bcolz")      # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from bale.errors import BaleError, CorruptFileError, SchemaError
from bale.importers.base import SourceBatch
from bale.importers.bcolz_chunks import ChunkReader
from bale.importers.bcolz_layout import Carray, open_carray, read_json
from bale.importers.columns import (
    ArraySource,
    FieldColumn,
    checked_range,
    checked_rows,
    column_name,
    field_columns,
)

__all__ = ["BcolzSource"]


class BcolzSource(ArraySource):
    """Rows of a bcolz carray or ctable directory, without bcolz.

    A carray gives one column named after its directory (``old_images.bcolz`` ->
    ``old_images``), or one per field for a record dtype; a ctable gives its columns. Arrays of
    pickled Python objects (dtype ``object``) are only read with ``trust=True``.
    Fixed-width bytes (``S``) become bytes columns and fixed-width unicode (``U``) string
    columns.
    """

    def __init__(self, path: str | os.PathLike[str], *, trust: bool = False) -> None:
        self.path = os.fspath(path)
        self._trust = trust
        if not os.path.isdir(self.path):
            raise BaleError(
                "not a bcolz directory (a carray or ctable is a folder with meta/ and data/, or "
                "__rootdirs__)",
                path=self.path,
            )
        self._carrays: dict[str, Carray] = {}
        if os.path.exists(os.path.join(self.path, "__rootdirs__")):
            self._kind = "ctable"
            roots = read_json(os.path.join(self.path, "__rootdirs__"), "__rootdirs__")
            # bcolz 1.x writes {"names": [...]}; accept a bare list of names too
            names = roots.get("names") if isinstance(roots, dict) else roots
            if not isinstance(names, list) or not names:
                raise CorruptFileError("__rootdirs__ lists no column names", path=self.path)
            dirs = roots.get("dirs") if isinstance(roots, dict) else None
            for name in map(str, names):
                self._carrays[name] = open_carray(self._column_dir(name, dirs))
            attrs_path = os.path.join(self.path, "__attrs__")
            self._attrs = read_json(attrs_path, "__attrs__") if os.path.exists(attrs_path) else {}
        elif os.path.exists(os.path.join(self.path, "meta", "storage")):
            self._kind = "carray"
            carray = open_carray(self.path)
            self._carrays[column_name(self.path)] = carray
            self._attrs = carray.attrs
        else:
            raise BaleError(
                "not a bcolz carray or ctable: expected meta/storage (carray) or __rootdirs__ "
                "(ctable) inside the directory",
                path=self.path,
            )
        lengths = {n: c.length for n, c in self._carrays.items()}
        if len(set(lengths.values())) > 1:
            raise SchemaError(
                f"ctable columns have different lengths: {lengths} (a half-written table?)",
                path=self.path,
            )
        self._num_rows = next(iter(lengths.values()))
        self._columns: dict[str, list[FieldColumn]] = {}
        for name, c in self._carrays.items():
            base = "" if self._kind == "carray" and c.dtype.names else name
            self._columns[name] = field_columns(base, c.dtype, c.row_shape, path=c.rootdir)
        self._readers: dict[str, ChunkReader] = {}

    def _column_dir(self, name: str, dirs: Any) -> str:
        here = os.path.join(self.path, name)
        if os.path.isdir(here) or not isinstance(dirs, dict) or name not in dirs:
            return here
        # Old releases recorded each column's absolute directory; the table may have moved.
        recorded = str(dirs[name])
        moved = os.path.join(self.path, os.path.basename(recorded.rstrip("/\\")))
        return moved if os.path.isdir(moved) else recorded

    @property
    def metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": "bcolz", "kind": self._kind}
        if self._kind == "ctable":
            out["columns"] = {n: c.describe() for n, c in self._carrays.items()}
            if self._attrs:
                out["attrs"] = self._attrs
        else:
            out.update(next(iter(self._carrays.values())).describe())
        # Class names kept as an attribute (carray.attrs["classes"] = [...]) name the labels, as
        # an HDF5 file's classes dataset does: bale info, show and export read metadata["classes"]
        attrs = out.get("attrs")
        classes = attrs.get("classes") if isinstance(attrs, dict) else None
        if isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes):
            out["classes"] = list(classes)
        return out

    @property
    def picklable(self) -> bool:
        return True  # only paths and parsed metadata; chunk files are opened per read

    def _reader(self, name: str) -> ChunkReader:
        reader = self._readers.get(name)
        if reader is None:
            reader = self._readers[name] = ChunkReader(self._carrays[name], self._trust)
        return reader

    def read(self, start: int, stop: int) -> SourceBatch:
        start, stop = checked_range(start, stop, self.num_rows, self.path)
        return self._batch(
            lambda name: self._reader(name).read(start, stop), np.arange(start, stop), start
        )

    def take(self, rows: Sequence[int] | np.ndarray) -> SourceBatch:
        """The given rows; each chunk they fall in is decompressed once."""
        idx = checked_rows(rows, self.num_rows, self.path)
        return self._batch(lambda name: self._reader(name).take(idx), idx, 0)

    def close(self) -> None:
        self._readers = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_readers"] = {}
        return state
