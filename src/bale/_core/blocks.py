"""Blocks: stored (compressed, as on disk) and decoded (checked column data); a bounded LRU cache."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from bale._core.batches import unpack_var_rows
from bale._core.forksafe import ForkSafeLock
from bale.codecs import Buffer, Codec, UnsupportedCodec, max_decoded_size
from bale.codecs.framing import decode_block
from bale.errors import CorruptFileError, UnsupportedFeatureError
from bale.format.frames import frame_spans
from bale.format.header import checksum
from bale.format.schema import Array, Column, Unsupported


@dataclass(frozen=True)
class StoredBlock:
    """One column's block as stored in a file: compressed parts, sizes, checksum, codec config."""

    parts: list[Buffer]
    raw_size: int
    checksum: int
    codec: dict[str, Any]

    @property
    def stored_size(self) -> int:
        return sum(memoryview(p).nbytes for p in self.parts)


@dataclass(frozen=True)
class StoredGroup:
    """A row group's blocks as stored, checksums verified: copied between files without
    decompressing (``Dataset.stored_group`` -> ``Writer.write_stored_group``)."""

    num_rows: int
    blocks: dict[str, StoredBlock]
    segment_bytes: int


@dataclass(frozen=True)
class VarRows:
    """A decoded bytes/string block: row i is ``data[offsets[i]:offsets[i + 1]]``."""

    data: memoryview
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, i: int) -> bytes:
        return bytes(self.data[self.offsets[i] : self.offsets[i + 1]])

    @property
    def nbytes(self) -> int:
        return len(self.data) + self.offsets.nbytes


Decoded = np.ndarray | VarRows


def check_block(
    payload: bytes | bytearray | memoryview,
    expected: int,
    *,
    path: str,
    column: str,
    rows: tuple[int, int],
) -> None:
    """Raise CorruptFileError (naming file, column, rows) unless the stored bytes match their
    recorded checksum."""
    if checksum(payload) != expected:
        raise CorruptFileError(
            "block checksum mismatch (the stored bytes were changed or damaged)",
            path=path,
            column=column,
            rows=rows,
        )


def check_readable(column: Column, *, path: str, rows: tuple[int, int] | None) -> None:
    """UnsupportedFeatureError (naming file, column, rows) for a column of a kind or dtype this
    bale does not know."""
    if isinstance(column.type, Unsupported):
        raise UnsupportedFeatureError(
            f"{column.type.what} is not known to this bale (written by a newer bale? upgrade "
            "bale to read this column; the other columns read normally)",
            path=path,
            column=column.name,
            rows=rows,
        )


def unsupported_codec(
    codec: Codec, *, path: str, column: str, rows: tuple[int, int]
) -> UnsupportedFeatureError:
    """The error for a non-empty block whose codec this bale does not know."""
    codec_id = codec.codec_id if isinstance(codec, UnsupportedCodec) else codec.id
    return UnsupportedFeatureError(
        f"unknown codec {codec_id!r} (written by a newer bale? upgrade bale to read this "
        "column; the other columns read normally)",
        path=path,
        column=column,
        rows=rows,
    )


def check_block_sizes(
    payload: bytes | bytearray | memoryview,
    raw_size: int,
    codec: Codec,
    segment_bytes: int,
    *,
    path: str,
    column: str,
    rows: tuple[int, int],
) -> None:
    """Before anything is allocated for a block's claimed decoded size: a segmented block holds
    the frames its size needs, and the size is one its stored bytes can decode to with its
    codec (CorruptFileError otherwise). A claimed size is thus bounded by the file's."""
    stored = memoryview(payload).nbytes
    frames = 1
    try:
        if raw_size > segment_bytes:
            frames = -(-raw_size // segment_bytes)
            if 8 * frames > stored:
                raise CorruptFileError(
                    f"a block of {raw_size} bytes needs {frames} frames; its {stored} stored "
                    "bytes cannot hold them"
                )
            frame_spans(memoryview(payload).cast("B"), frames)
        limit = max_decoded_size(codec, stored - 8 * frames if frames > 1 else stored, frames)
        if limit is not None and raw_size > limit:
            raise CorruptFileError(
                f"the block claims {raw_size} decoded bytes; {stored} bytes of "
                f"{codec.id} cannot hold more than {limit}"
            )
    except CorruptFileError as exc:
        raise CorruptFileError(exc.detail, path=path, column=column, rows=rows) from exc


def normalized_bool(array: np.ndarray) -> np.ndarray:
    """A bool array with every byte 0 or 1: any other non-zero byte (never written by bale,
    possible in a crafted file) becomes True. NumPy's bools are undefined for other bytes.
    Returns ``array`` itself when it holds only 0 and 1 (the usual case: one pass to check)."""
    if array.dtype != np.bool_ or not array.size:
        return array
    data = array.view(np.uint8)
    if int(data.max()) <= 1:
        return array
    normalized: np.ndarray = data != 0
    return normalized


def decode_column_block(
    payload: bytes | bytearray | memoryview,
    record: Any,  # a BLOCK_DTYPE row
    codec: Codec,
    column: Column,
    num_rows: int,
    *,
    segment_bytes: int,
    verify: bool,
    path: str,
    rows: tuple[int, int],
) -> Decoded:
    """Check and decode one block. Any mismatch raises CorruptFileError naming file, column, rows;
    damaged bytes are never returned as data."""
    raw_size = int(record["raw_size"])
    check_readable(column, path=path, rows=rows)
    if verify:
        check_block(payload, int(record["checksum"]), path=path, column=column.name, rows=rows)
    if raw_size and isinstance(codec, UnsupportedCodec):
        raise unsupported_codec(codec, path=path, column=column.name, rows=rows)
    column_type = column.type
    if isinstance(column_type, Array) and raw_size != num_rows * column_type.row_nbytes:
        raise CorruptFileError(
            f"block holds {raw_size} bytes, expected {num_rows * column_type.row_nbytes} for "
            f"{num_rows} rows of {column_type.row_nbytes} bytes",
            path=path,
            column=column.name,
            rows=rows,
        )
    if not isinstance(column_type, Array) and raw_size < 8 * num_rows:
        raise CorruptFileError(
            f"block of {raw_size} bytes cannot hold the lengths of {num_rows} rows",
            path=path,
            column=column.name,
            rows=rows,
        )
    check_block_sizes(
        payload, raw_size, codec, segment_bytes, path=path, column=column.name, rows=rows
    )
    try:
        decoded = decode_block(codec, memoryview(payload), raw_size, segment_bytes)
    except CorruptFileError as exc:  # codecs/ translated the library's error; add where it is
        raise CorruptFileError(exc.detail, path=path, column=column.name, rows=rows) from exc
    if len(decoded) != raw_size:
        raise CorruptFileError(
            f"block decoded to {len(decoded)} bytes, expected {raw_size}",
            path=path,
            column=column.name,
            rows=rows,
        )
    if isinstance(column_type, Array):
        array = normalized_bool(
            np.frombuffer(decoded, dtype=column_type.numpy_dtype).reshape(
                (num_rows, *column_type.shape)
            )
        )
        array.flags.writeable = False  # cached and shared between callers
        return array
    try:
        data, offsets = unpack_var_rows(decoded, num_rows)
    except ValueError as exc:
        raise CorruptFileError(str(exc), path=path, column=column.name, rows=rows) from exc
    return VarRows(data, offsets)


class BlockCache:
    """A thread- and fork-safe LRU of decoded blocks, bounded by their total size in bytes. Keys
    are ``(group, column)`` for whole blocks, ``(group, column, frame)`` for single frames and
    ``(group, column, -1)`` for a bytes block's row offsets, ``(group, column, -2)`` for a block's
    frame records. Bytes ``reserve``d (kept elsewhere
    within the same budget, as pinned columns are) lower what it holds."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._reserved = 0
        self._items: OrderedDict[tuple[int, ...], Decoded] = OrderedDict()
        self._size = 0
        self._lock = ForkSafeLock()

    def get(self, key: tuple[int, ...]) -> Decoded | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple[int, ...], item: Decoded) -> None:
        size = item.nbytes
        limit = self.capacity_bytes - self._reserved
        if size > limit:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = item
            self._size += size
            self._shrink(limit)

    def reserve(self, nbytes: int) -> None:
        """Take ``nbytes`` of the budget for data kept elsewhere; evicts to make room."""
        with self._lock:
            self._reserved += nbytes
            self._shrink(self.capacity_bytes - self._reserved)

    def release_reserved(self) -> None:
        with self._lock:
            self._reserved = 0

    def _shrink(self, limit: int) -> None:
        while self._size > limit and self._items:
            _, evicted = self._items.popitem(last=False)
            self._size -= evicted.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0
