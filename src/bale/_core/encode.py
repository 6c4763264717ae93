"""What the Writer stores for a column, decided once for the Writer and the codec advisor: the
codec as recorded, the raw bytes of a block, the encoded block, and rows per row group.

The advisor (``bale.measure``) measures candidate codecs through these same functions, so what
it measures is byte for byte what ``Writer(codecs=...)`` writes.

>>> from bale.codecs import parse_codec
>>> from bale.format.schema import Array
>>> written_codec(Array("uint8", (64, 64, 3)), parse_codec("blosc2:zstd:1:shuffle")).config()["typesize"]
3
>>> bytes(raw_block([b"ab", b"c"]))
b'\\x02\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00abc'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bale._core.batches import ColumnData, pack_var_rows
from bale._core.blocks import StoredBlock
from bale._core.defaults import default_codec, shuffle_typesize
from bale.codecs import Buffer, Codec, codec_from_config
from bale.codecs.framing import encode_block
from bale.errors import CodecError
from bale.format.header import checksum_parts
from bale.format.schema import ColumnType

__all__ = [
    "column_row_bytes",
    "encode_column_block",
    "encode_payload",
    "raw_block",
    "raw_nbytes",
    "rows_per_group",
    "sniff_rows",
    "written_codec",
]

# Rows of a bytes column's first batch looked at to recognise compressed media.
_SNIFF_ROWS = 64


def written_codec(
    column_type: ColumnType, given: Codec | None = None, first_rows: Any = None
) -> Codec:
    """The codec the Writer records for a column: ``given`` tuned to the column (blosc2's
    shuffle item size: the channel count for channels-last 8-bit images, else the dtype's
    size), else bale's default for the type (for bytes columns, chosen from ``first_rows``:
    already-compressed media are stored as they are)."""
    if given is not None:
        return given.for_itemsize(shuffle_typesize(column_type))
    return default_codec(column_type, sniff_rows(first_rows))


def sniff_rows(values: Any) -> list[bytes]:
    """Up to 64 rows of a bytes column, to recognise compressed media; [] for other columns."""
    if values is None or (isinstance(values, np.ndarray) and values.dtype.kind not in "SO"):
        return []
    return [
        bytes(v)
        for v in list(values[:_SNIFF_ROWS])
        if isinstance(v, (bytes, bytearray, memoryview))
    ]


def raw_block(data: ColumnData) -> memoryview:
    """A block's raw bytes before encoding: an array's bytes in C order, or var rows packed as
    u64 lengths then the rows (``pack_var_rows``)."""
    if isinstance(data, np.ndarray):
        return memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8))  # type: ignore[arg-type]
    return memoryview(pack_var_rows(data))


def raw_nbytes(data: ColumnData) -> int:
    """``len(raw_block(data))`` without building it: var rows count their 8-byte lengths."""
    if isinstance(data, np.ndarray):
        return int(data.nbytes)
    return 8 * len(data) + sum(len(r) for r in data)


def encode_payload(codec: Codec, raw: memoryview, segment_bytes: int) -> list[Buffer]:
    """The stored payload of one block: ``raw`` encoded, in frames of ``segment_bytes`` of raw
    data when larger (``bale.codecs.framing``). Codec library errors propagate."""
    return encode_block(codec, raw, segment_bytes)


def encode_column_block(
    codec_config: Mapping[str, Any],
    data: ColumnData,
    segment_bytes: int,
    *,
    path: str | None = None,
    column: str | None = None,
) -> StoredBlock:
    """One column's rows of a row group as stored: payload, raw size, checksum, codec config.
    A codec library error becomes a ``CodecError`` naming the file and column."""
    config = dict(codec_config)
    raw = raw_block(data)
    codec = codec_from_config(config)
    try:
        parts = encode_payload(codec, raw, segment_bytes)
    except CodecError as exc:  # codecs/ translated the library's error: add the file and column
        raise CodecError(exc.detail, path=path, column=column) from exc
    return StoredBlock(parts, len(raw), checksum_parts(parts), config)


def column_row_bytes(columns: Mapping[str, ColumnData], n: int) -> dict[str, float]:
    """Raw bytes per row of each column over ``n`` rows: an array's bytes, or 8 (the stored
    length) plus the mean row length."""
    out = {}
    for name, data in columns.items():
        if isinstance(data, np.ndarray):
            out[name] = data.nbytes / n if n else 0.0
        else:
            out[name] = 8 + sum(len(r) for r in data) / n
    return out


def rows_per_group(row_bytes: Mapping[str, float], row_group_bytes: int) -> int:
    """Rows in each row group when ``row_group_rows`` is not given: as many as fill about
    ``row_group_bytes`` of raw data, counting every column (at least one)."""
    total = sum(row_bytes.values())  # summed in column order: the same float every time
    return max(1, int(row_group_bytes // max(total, 1.0)))
