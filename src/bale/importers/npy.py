""".npy and .npz files as RowSources.

``NpySource`` memory-maps a .npy file and reads row ranges from the map. ``NpzSource`` reads a
.npz archive: members stored uncompressed (``np.savez``) are memory-mapped inside the zip;
members compressed by ``np.savez_compressed`` are streamed, decompressing only up to the rows
asked for (going backwards restarts that member's decompression from its start).

>>> src = NpySource("images.npy")            # doctest: +SKIP
>>> src.num_rows, src.read(0, 2).columns["images"].shape    # doctest: +SKIP
(1000, (2, 64, 64, 3))
"""

from __future__ import annotations

import os
import struct
import threading
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from bale.errors import BaleError, CorruptFileError, SchemaError
from bale.importers.base import SourceBatch
from bale.importers.columns import (
    ArraySource,
    FieldColumn,
    checked_range,
    checked_rows,
    column_name,
    field_columns,
)

__all__ = ["NpySource", "NpzSource"]

# --------------------------------------------------------------------------------------------
# .npy
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _NpyHeader:
    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype[Any]
    data_offset: int  # bytes from the start of the .npy stream to its data

    @property
    def data_nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def _read_npy_header(fp: BinaryIO, where: str) -> _NpyHeader:
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        else:  # 2.0 and 3.0 share a layout (3.0 only allows UTF-8 field names)
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise CorruptFileError(f"not a readable .npy header: {exc}", path=where) from None
    return _NpyHeader(tuple(int(d) for d in shape), bool(fortran), dtype, fp.tell())


def _check_plain_dtype(header: _NpyHeader, where: str) -> None:
    if header.dtype.hasobject:
        raise BaleError(
            f"the array holds Python objects (dtype {header.dtype}): its rows are pickles, "
            "which bale does not unpickle from .npy files. Load it yourself with "
            "np.load(..., allow_pickle=True) if you trust it, and write the rows with bale.write",
            path=where,
        )
    if not header.shape:
        raise SchemaError(
            f"a 0-d array (a single {header.dtype} value) has no rows to import", path=where
        )


def _array_columns(base: str, header: _NpyHeader, where: str) -> list[FieldColumn]:
    return field_columns(base, header.dtype, header.shape[1:], path=where)


class NpySource(ArraySource):
    """Rows of a .npy file, read from a memory map (the file is never loaded whole).

    One column named after the file's stem (``train_x.npy`` -> ``train_x``), or ``column``;
    a structured dtype gives one column per field instead.
    """

    def __init__(self, path: str | os.PathLike[str], *, column: str | None = None) -> None:
        self.path = os.fspath(path)
        self._name = column or column_name(self.path)
        with open(self.path, "rb") as fp:
            self._header = _read_npy_header(fp, self.path)
        _check_plain_dtype(self._header, self.path)
        base = "" if self._header.dtype.names is not None and column is None else self._name
        self._num_rows = self._header.shape[0]
        self._columns = {self._name: _array_columns(base, self._header, self.path)}
        size = os.path.getsize(self.path)
        need = self._header.data_offset + self._header.data_nbytes
        if size < need:
            raise CorruptFileError(
                f"the file is truncated: its header describes {self._header.dtype} "
                f"{list(self._header.shape)} ({self._header.data_nbytes} bytes of data after a "
                f"{self._header.data_offset}-byte header, {need} bytes in all) but the file has "
                f"{size} bytes",
                path=self.path,
            )
        self._array: np.ndarray | None = None

    def _map(self) -> np.ndarray:
        if self._array is None:
            h = self._header
            if h.data_nbytes == 0:
                self._array = np.empty(h.shape, dtype=h.dtype)
            else:
                self._array = np.memmap(
                    self.path,
                    dtype=h.dtype,
                    mode="r",
                    offset=h.data_offset,
                    shape=h.shape,
                    order="F" if h.fortran_order else "C",
                )
        return self._array

    @property
    def metadata(self) -> dict[str, Any]:
        return {
            "source": "npy",
            "file": os.path.basename(self.path),
            "dtype": str(self._header.dtype),
            "shape": list(self._header.shape),
        }

    @property
    def random_access(self) -> bool:
        return True

    @property
    def picklable(self) -> bool:
        return True

    def read(self, start: int, stop: int) -> SourceBatch:
        start, stop = checked_range(start, stop, self.num_rows, self.path)
        try:
            values = np.array(self._map()[start:stop])
        except OSError as exc:
            raise CorruptFileError(
                f"reading failed: {exc}", path=self.path, rows=(start, stop)
            ) from None
        return self._batch(lambda _: values, np.arange(start, stop), start)

    def take(self, rows: Sequence[int] | np.ndarray) -> SourceBatch:
        idx = checked_rows(rows, self.num_rows, self.path)
        values = np.asarray(self._map()[idx])
        return self._batch(lambda _: values, idx, int(idx.min()) if len(idx) else 0)

    def close(self) -> None:
        self._array = None  # the map closes when its last view goes

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_array"] = None
        return state


# --------------------------------------------------------------------------------------------
# .npz
# --------------------------------------------------------------------------------------------

_LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # zip local file header, 30 bytes
_LOCAL_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class _NpzMember:
    name: str  # inside the zip, e.g. "x.npy"
    column: str
    header: _NpyHeader
    stored_offset: int | None  # absolute offset of the array data when stored uncompressed


def _stored_data_offset(fp: BinaryIO, info: zipfile.ZipInfo, where: str) -> int:
    """Where a stored (uncompressed) member's bytes start in the archive: after its local
    header, whose extra field can differ from the central directory's."""
    fp.seek(info.header_offset)
    raw = fp.read(_LOCAL_HEADER.size)
    if len(raw) != _LOCAL_HEADER.size or raw[:4] != _LOCAL_MAGIC:
        raise CorruptFileError(f"member {info.filename!r}: bad zip local header", path=where)
    fields = _LOCAL_HEADER.unpack(raw)
    name_len, extra_len = int(fields[-2]), int(fields[-1])
    return info.header_offset + _LOCAL_HEADER.size + name_len + extra_len


class NpzSource(ArraySource):
    """Rows of a .npz archive: one column per member array (``np.savez(f, x=..., y=...)`` gives
    columns ``x`` and ``y``; positional arrays are ``arr_0``, ``arr_1``...).

    All members must have the same number of rows. Members stored uncompressed are memory-mapped;
    compressed members are decompressed as a stream, so reading rows in order costs one pass and
    holds only the rows asked for (a Fortran-ordered compressed member is the exception: it is
    loaded whole on first read, since its rows are not contiguous).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        members: list[_NpzMember] = []
        try:
            with zipfile.ZipFile(self.path) as zf, open(self.path, "rb") as raw:
                for info in zf.infolist():
                    if not info.filename.endswith(".npy") or info.is_dir():
                        continue
                    where = f"{self.path}:{info.filename}"
                    with zf.open(info) as fp:
                        header = _read_npy_header(fp, where)  # type: ignore[arg-type]
                    _check_plain_dtype(header, where)
                    offset = None
                    if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 1:
                        offset = _stored_data_offset(raw, info, self.path) + header.data_offset
                        if offset + header.data_nbytes > os.path.getsize(self.path):
                            raise CorruptFileError(
                                f"member {info.filename!r} is truncated", path=self.path
                            )
                    members.append(_NpzMember(info.filename, info.filename[:-4], header, offset))
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise CorruptFileError(
                f"not a readable .npz (zip) archive: {exc}", path=self.path
            ) from None
        if not members:
            raise SchemaError("the archive holds no .npy arrays", path=self.path)
        lengths = {m.column: m.header.shape[0] for m in members}
        if len(set(lengths.values())) > 1:
            raise SchemaError(
                "members have different numbers of rows, so they cannot be columns of one "
                f"dataset: {lengths} (export the ones that belong together to their own file)",
                path=self.path,
            )
        self._members = members
        self._by_column = {m.column: m for m in members}
        self._columns = {
            m.column: _array_columns(m.column, m.header, f"{self.path}:{m.name}") for m in members
        }
        self._num_rows = members[0].header.shape[0]
        self._maps: dict[str, np.ndarray] = {}
        self._zip: zipfile.ZipFile | None = None
        self._streams: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def metadata(self) -> dict[str, Any]:
        return {
            "source": "npz",
            "file": os.path.basename(self.path),
            "members": {
                m.name: {"dtype": str(m.header.dtype), "shape": list(m.header.shape)}
                for m in self._members
            },
        }

    @property
    def random_access(self) -> bool:
        return all(m.stored_offset is not None for m in self._members)

    @property
    def picklable(self) -> bool:
        return True

    def _member_map(self, m: _NpzMember) -> np.ndarray:
        array = self._maps.get(m.name)
        if array is None:
            h = m.header
            if m.stored_offset is None:  # compressed and Fortran-ordered: load whole
                with self._open_zip().open(m.name) as fp:
                    array = np.lib.format.read_array(fp, allow_pickle=False)  # type: ignore[arg-type]
            elif h.data_nbytes == 0:
                array = np.empty(h.shape, dtype=h.dtype)
            else:
                array = np.memmap(
                    self.path,
                    dtype=h.dtype,
                    mode="r",
                    offset=m.stored_offset,
                    shape=h.shape,
                    order="F" if h.fortran_order else "C",
                )
            self._maps[m.name] = array
        return array

    def _open_zip(self) -> zipfile.ZipFile:
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        return self._zip

    def _stream_rows(self, m: _NpzMember, start: int, stop: int) -> np.ndarray:
        """Rows start..stop of a compressed C-ordered member, decompressing only up to them."""
        h = m.header
        row_bytes = h.dtype.itemsize * int(np.prod(h.shape[1:], dtype=np.int64))
        want = (stop - start) * row_bytes
        with self._lock:
            fp = self._streams.get(m.name)
            if fp is None:
                fp = self._streams[m.name] = self._open_zip().open(m.name)
            # ZipExtFile.seek reads forward to the target, or restarts for a backward jump.
            fp.seek(h.data_offset + start * row_bytes)
            data = fp.read(want)
        if len(data) != want:
            raise CorruptFileError(
                f"member {m.name!r} ends early: expected {want} bytes for these rows, "
                f"got {len(data)}",
                path=self.path,
                rows=(start, stop),
            )
        return np.frombuffer(data, dtype=h.dtype).reshape((stop - start, *h.shape[1:]))

    def _member_rows(self, m: _NpzMember, start: int, stop: int) -> np.ndarray:
        try:
            if m.stored_offset is None and not m.header.fortran_order:
                return self._stream_rows(m, start, stop)
            return np.array(self._member_map(m)[start:stop])
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise CorruptFileError(
                f"member {m.name!r} could not be read: {exc}", path=self.path, rows=(start, stop)
            ) from None

    def _member_take(self, m: _NpzMember, idx: np.ndarray) -> np.ndarray:
        if m.stored_offset is not None or m.header.fortran_order:
            return np.asarray(self._member_map(m)[idx])
        # streamed: visit rows in file order, then put them back in the asked order
        order = np.argsort(idx, kind="stable")
        parts = [self._member_rows(m, int(r), int(r) + 1) for r in idx[order]]
        h = m.header
        sorted_values = np.concatenate(parts) if parts else np.empty((0, *h.shape[1:]), h.dtype)
        values = np.empty_like(sorted_values)
        values[order] = sorted_values
        return values

    def read(self, start: int, stop: int) -> SourceBatch:
        start, stop = checked_range(start, stop, self.num_rows, self.path)
        return self._batch(
            lambda column: self._member_rows(self._by_column[column], start, stop),
            np.arange(start, stop),
            start,
        )

    def take(self, rows: Sequence[int] | np.ndarray) -> SourceBatch:
        idx = checked_rows(rows, self.num_rows, self.path)
        return self._batch(lambda column: self._member_take(self._by_column[column], idx), idx, 0)

    def close(self) -> None:
        with self._lock:
            for fp in self._streams.values():
                fp.close()
            self._streams.clear()
            if self._zip is not None:
                self._zip.close()
                self._zip = None
            self._maps.clear()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_maps={}, _zip=None, _streams={}, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
