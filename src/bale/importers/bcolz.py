"""bcolz carray/ctable directories as RowSources, read from their on-disk layout with blosc2.

bcolz is unmaintained and its builds no longer install; its data files are plain Blosc1
chunks, which python-blosc2 decompresses. The layout read here (bcolz 1.x, "DISK_FORMAT_v1";
docs/LEGACY.md has the table) is:

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

import ast
import json
import os
import pickle
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bale.errors import BaleError, CodecError, CorruptFileError, SchemaError
from bale.importers.base import SourceBatch
from bale.importers.columns import (
    ArraySource,
    FieldColumn,
    checked_range,
    checked_rows,
    column_name,
    field_columns,
    field_values,
    rows_nbytes_hint,
)

__all__ = ["BcolzSource"]

_BLOSCPACK_HEADER = struct.Struct("<4sB3xq")  # magic, format version, reserved, nchunks
_BLOSCPACK_MAGIC = b"blpk"
_BLOSC_HEADER = struct.Struct("<BBBBIII")  # version, versionlz, flags, typesize, nbytes,
#                                            blocksize, ctbytes (all little-endian)
_MEMCPYED = 0x02  # Blosc1 flag: the chunk holds its bytes uncompressed
_COMPRESSOR_FORMATS = {0: "blosclz", 1: "lz4", 2: "snappy", 3: "zlib", 4: "zstd"}


def _read_json(path: str, what: str) -> Any:
    try:
        with open(path, "rb") as fp:
            text = fp.read().decode("utf-8").strip()
    except FileNotFoundError:
        raise BaleError(f"missing {what} file {path!r}: not a bcolz directory?") from None
    if not text:  # bcolz writes an empty __attrs__ when a carray has no attributes
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CorruptFileError(f"{what} is not valid JSON: {exc}", path=path) from None


def _parse_dtype(text: Any, where: str) -> np.dtype[Any]:
    """bcolz stores ``str(dtype)``: ``"int32"``, ``"<U8"``, or for records the repr of a list."""
    dtype: np.dtype[Any]
    try:
        dtype = np.dtype(text)
    except TypeError:
        try:
            dtype = np.dtype(ast.literal_eval(str(text)))
        except (ValueError, SyntaxError, TypeError) as exc:
            raise CorruptFileError(
                f"unreadable dtype {text!r} in meta/storage: {exc}", path=where
            ) from None
    return dtype


@dataclass(frozen=True)
class _Carray:
    """One carray directory, as its metadata describes it."""

    rootdir: str
    dtype: np.dtype[Any]  # of one element (bcolz's ``dtype.base``); may be a record dtype
    row_shape: tuple[int, ...]
    length: int
    chunklen: int
    storage: dict[str, Any]
    attrs: dict[str, Any]

    @property
    def row_nbytes(self) -> int:
        return self.dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64))

    @property
    def is_object(self) -> bool:
        return self.dtype.hasobject

    @property
    def num_chunks(self) -> int:
        if self.is_object:
            return self.length  # one pickled object per chunk
        return -(-self.length // self.chunklen)

    def chunk_file(self, i: int) -> str:
        return os.path.join(self.rootdir, "data", f"__{i}.blp")

    def chunk_rows(self, i: int) -> tuple[int, int]:
        if self.is_object:
            return i, i + 1
        return i * self.chunklen, min((i + 1) * self.chunklen, self.length)

    def describe(self) -> dict[str, Any]:
        out = {
            "dtype": str(self.dtype),
            "shape": [self.length, *self.row_shape],
            "chunklen": self.chunklen,
            "cparams": self.storage.get("cparams"),
        }
        if self.attrs:
            out["attrs"] = self.attrs
        return out


def _open_carray(rootdir: str) -> _Carray:
    sizes = _read_json(os.path.join(rootdir, "meta", "sizes"), "meta/sizes")
    storage = _read_json(os.path.join(rootdir, "meta", "storage"), "meta/storage")
    attrs_path = os.path.join(rootdir, "__attrs__")
    attrs = _read_json(attrs_path, "__attrs__") if os.path.exists(attrs_path) else {}
    try:
        shape = tuple(int(d) for d in sizes["shape"])
        chunklen = int(storage["chunklen"])
        dtype = _parse_dtype(storage["dtype"], rootdir)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, BaleError):
            raise
        raise CorruptFileError(
            f"meta/sizes or meta/storage lacks a valid field ({exc!r})", path=rootdir
        ) from None
    if not shape or min(shape) < 0 or chunklen < 1:
        raise CorruptFileError(
            f"invalid shape {list(shape)} or chunklen {chunklen} in meta", path=rootdir
        )
    row_shape = shape[1:]
    if dtype.subdtype is not None:  # bcolz 1.x stores the scalar dtype, but be lenient
        base, sub_shape = dtype.subdtype
        dtype, row_shape = base, tuple(sub_shape) + row_shape
    if dtype.hasobject and (dtype != np.dtype(object) or row_shape):
        raise SchemaError(f"unsupported bcolz dtype {dtype} with shape {list(shape)}", path=rootdir)
    return _Carray(rootdir, dtype, row_shape, shape[0], chunklen, dict(storage), dict(attrs))


def _decompress(carray: _Carray, i: int) -> bytes:
    """The bytes of chunk ``i``, checked against the sizes the metadata implies."""
    import blosc2  # a bale dependency; imported here to keep `import bale` light

    path = carray.chunk_file(i)
    rows = carray.chunk_rows(i)

    def corrupt(why: str) -> CorruptFileError:
        return CorruptFileError(f"chunk file {path!r}: {why}", path=carray.rootdir, rows=rows)

    try:
        with open(path, "rb") as fp:
            raw = fp.read()
    except FileNotFoundError:
        raise corrupt("missing") from None
    except OSError as exc:
        raise corrupt(str(exc)) from None

    head = _BLOSCPACK_HEADER.size
    if len(raw) < head + _BLOSC_HEADER.size:
        raise corrupt(f"only {len(raw)} bytes, shorter than its headers")
    magic, _version, _nchunks = _BLOSCPACK_HEADER.unpack_from(raw)
    if magic != _BLOSCPACK_MAGIC:
        raise corrupt(f"does not start with the bloscpack magic b'blpk' (found {magic!r})")
    version, _versionlz, flags, typesize, nbytes, _blocksize, ctbytes = _BLOSC_HEADER.unpack_from(
        raw, head
    )
    if not 1 <= version <= 5 or typesize == 0:
        raise corrupt(f"not a Blosc chunk (format version {version}, typesize {typesize})")
    if ctbytes < _BLOSC_HEADER.size or head + ctbytes > len(raw):
        raise corrupt(
            f"truncated: its Blosc header says {ctbytes} compressed bytes, the file holds "
            f"{len(raw) - head}"
        )
    if carray.is_object:
        expected_ok = True
        expected = f"{nbytes}"
    else:
        n_rows = rows[1] - rows[0]
        need = n_rows * carray.row_nbytes
        full = carray.chunklen * carray.row_nbytes
        # bcolz 1.x writes the leftover chunk with just its rows; a full-size one is accepted.
        is_leftover = n_rows < carray.chunklen
        expected_ok = nbytes == need or (is_leftover and nbytes == full)
        expected = f"{need}" + (f" (or {full})" if is_leftover else "")
    if not expected_ok:
        raise corrupt(f"holds {nbytes} bytes uncompressed, expected {expected}")
    try:
        out = blosc2.decompress(raw[head : head + ctbytes])
    except Exception as exc:  # blosc2 raises RuntimeError/ValueError on bad input
        compressor = _COMPRESSOR_FORMATS.get(flags >> 5, f"#{flags >> 5}")
        if compressor == "snappy" and not flags & _MEMCPYED:
            raise CodecError(
                f"chunk file {path!r} is compressed with snappy, which python-blosc2 cannot "
                "decompress (c-blosc2 dropped snappy). Read the array with a bcolz build that "
                "has snappy and save it as .npy, then pack that (docs/LEGACY.md shows how)",
                path=carray.rootdir,
                rows=rows,
            ) from None
        raise corrupt(f"Blosc could not decompress it ({compressor}): {exc}") from None
    if len(out) != nbytes:
        raise corrupt(f"decompressed to {len(out)} bytes, its header says {nbytes}")
    return bytes(out)


class _ChunkReader:
    """Rows of one carray, decompressing each chunk once and keeping the last one."""

    def __init__(self, carray: _Carray, trust: bool) -> None:
        self.carray = carray
        self._trust = trust
        self._cached: tuple[int, Any] | None = None

    def chunk(self, i: int) -> Any:
        if self._cached is not None and self._cached[0] == i:
            return self._cached[1]
        c = self.carray
        data = _decompress(c, i)
        values: Any
        if c.is_object:
            if not self._trust:
                raise BaleError(
                    "this carray holds pickled Python objects; refusing to unpickle them "
                    "(unpickling runs code chosen by the file's author). Pass trust=True "
                    "(`bale pack --trust-pickle`) if you trust it",
                    path=c.rootdir,
                    rows=(i, i + 1),
                )
            try:
                values = [pickle.loads(data)]
            except Exception as exc:  # any unpickling failure means damage
                raise CorruptFileError(
                    f"chunk file {c.chunk_file(i)!r} does not unpickle: {exc}",
                    path=c.rootdir,
                    rows=(i, i + 1),
                ) from None
        else:
            a, b = c.chunk_rows(i)
            items = (b - a) * int(np.prod(c.row_shape, dtype=np.int64))
            flat = np.frombuffer(data, dtype=c.dtype, count=items)
            values = flat.reshape((b - a, *c.row_shape))
        self._cached = (i, values)
        return values

    def _chunk_of(self, row: int) -> int:
        return row if self.carray.is_object else row // self.carray.chunklen

    def read(self, start: int, stop: int) -> Any:
        c = self.carray
        if c.is_object:
            return np.array([self.chunk(i)[0] for i in range(start, stop)] or [], dtype=object)
        out = np.empty((stop - start, *c.row_shape), dtype=c.dtype)
        pos = start
        while pos < stop:
            i = self._chunk_of(pos)
            a, b = c.chunk_rows(i)
            end = min(stop, b)
            out[pos - start : end - start] = self.chunk(i)[pos - a : end - a]
            pos = end
        return out

    def take(self, rows: np.ndarray) -> Any:
        c = self.carray
        if c.is_object:
            return np.array([self.chunk(int(r))[0] for r in rows] or [], dtype=object)
        out = np.empty((len(rows), *c.row_shape), dtype=c.dtype)
        chunk_ids = rows // c.chunklen
        for i in np.unique(chunk_ids):  # each chunk once, in file order
            where = np.nonzero(chunk_ids == i)[0]
            a = int(i) * c.chunklen
            out[where] = self.chunk(int(i))[rows[where] - a]
        return out


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
        self._carrays: dict[str, _Carray] = {}
        if os.path.exists(os.path.join(self.path, "__rootdirs__")):
            self._kind = "ctable"
            roots = _read_json(os.path.join(self.path, "__rootdirs__"), "__rootdirs__")
            # bcolz 1.x writes {"names": [...]}; accept a bare list of names too
            names = roots.get("names") if isinstance(roots, dict) else roots
            if not isinstance(names, list) or not names:
                raise CorruptFileError("__rootdirs__ lists no column names", path=self.path)
            dirs = roots.get("dirs") if isinstance(roots, dict) else None
            for name in map(str, names):
                self._carrays[name] = _open_carray(self._column_dir(name, dirs))
            attrs_path = os.path.join(self.path, "__attrs__")
            self._attrs = _read_json(attrs_path, "__attrs__") if os.path.exists(attrs_path) else {}
        elif os.path.exists(os.path.join(self.path, "meta", "storage")):
            self._kind = "carray"
            carray = _open_carray(self.path)
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
        self._readers: dict[str, _ChunkReader] = {}

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
        return out

    @property
    def picklable(self) -> bool:
        return True  # only paths and parsed metadata; chunk files are opened per read

    @property
    def row_nbytes_hint(self) -> int:
        return rows_nbytes_hint([c for cs in self._columns.values() for c in cs])

    def _reader(self, name: str) -> _ChunkReader:
        reader = self._readers.get(name)
        if reader is None:
            reader = self._readers[name] = _ChunkReader(self._carrays[name], self._trust)
        return reader

    def _batch(self, values_of: Any, rows: np.ndarray, first_row: int) -> SourceBatch:
        columns: dict[str, Any] = {}
        for name, cols in self._columns.items():
            values = values_of(self._reader(name))
            for col in cols:
                columns[col.name] = field_values(values, col, path=self.path, first_row=first_row)
        return SourceBatch(columns=columns, rows=rows)

    def read(self, start: int, stop: int) -> SourceBatch:
        start, stop = checked_range(start, stop, self.num_rows, self.path)
        return self._batch(lambda r: r.read(start, stop), np.arange(start, stop), start)

    def take(self, rows: Sequence[int] | np.ndarray) -> SourceBatch:
        """The given rows; each chunk they fall in is decompressed once."""
        idx = checked_rows(rows, self.num_rows, self.path)
        return self._batch(lambda r: r.take(idx), idx, 0)

    def close(self) -> None:
        self._readers = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_readers"] = {}
        return state
