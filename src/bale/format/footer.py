"""The footer: schema, metadata, codec table and the binary index of row groups and blocks."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bale.errors import CorruptFileError, SchemaError
from bale.format.constants import FORMAT_VERSION, MAX_JSON_BYTES, MAX_SEGMENT_BYTES
from bale.format.header import (
    MAX_METADATA_DEPTH,
    check_version,
    checksum,
    dump_json,
    json_int,
    parse_json_checked,
)
from bale.format.schema import Schema

#: One row per row group. Offsets are absolute file offsets.
GROUP_DTYPE = np.dtype(
    [("row_start", "<u8"), ("num_rows", "<u8"), ("offset", "<u8"), ("length", "<u8")]
)
#: One row per (row group, column), row-major. ``codec`` indexes the footer's codec table.
BLOCK_DTYPE = np.dtype(
    [
        ("offset", "<u8"),
        ("stored_size", "<u8"),
        ("raw_size", "<u8"),
        ("checksum", "<u8"),
        ("codec", "<u4"),
        ("reserved", "<u4"),
    ]
)
_LENGTH = struct.Struct("<QQ")  # json_length, json_checksum


@dataclass(frozen=True)
class BlockRecord:
    """Where one column's block of one row group lives and how to decode and check it."""

    offset: int
    stored_size: int
    raw_size: int
    checksum: int
    codec: Mapping[str, Any]

    def to_group_json(self, group_offset: int) -> dict[str, Any]:
        return {
            "offset": self.offset - group_offset,
            "stored_size": self.stored_size,
            "raw_size": self.raw_size,
            "checksum": self.checksum,
            "codec": dict(self.codec),
        }


@dataclass
class FileIndex:
    """Everything the footer holds: the whole file's description, read once at open."""

    schema: Schema
    metadata: dict[str, Any]
    codecs: list[dict[str, Any]]
    groups: np.ndarray  # GROUP_DTYPE, shape (G,)
    blocks: np.ndarray  # BLOCK_DTYPE, shape (G, C)
    segment_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)  # unknown optional fields, kept as-is
    #: The footer JSON's ``format_version`` (a file being written: this bale's).
    version: tuple[int, int] = FORMAT_VERSION

    @property
    def num_rows(self) -> int:
        if len(self.groups) == 0:
            return 0
        last = self.groups[-1]
        return int(last["row_start"] + last["num_rows"])

    @classmethod
    def empty(cls, schema: Schema, metadata: dict[str, Any], segment_bytes: int) -> FileIndex:
        return cls(
            schema,
            metadata,
            [],
            np.zeros(0, GROUP_DTYPE),
            np.zeros((0, len(schema)), BLOCK_DTYPE),
            segment_bytes,
        )

    def codec_at(self, group: int, column: int) -> dict[str, Any]:
        return self.codecs[int(self.blocks[group, column]["codec"])]

    def append_group(
        self, num_rows: int, offset: int, length: int, blocks: Sequence[BlockRecord]
    ) -> None:
        group = np.zeros(1, GROUP_DTYPE)
        group["row_start"] = self.num_rows
        group["num_rows"] = num_rows
        group["offset"] = offset
        group["length"] = length
        row = np.zeros((1, len(blocks)), BLOCK_DTYPE)
        for i, block in enumerate(blocks):
            codec = dict(block.codec)
            if codec not in self.codecs:
                self.codecs.append(codec)
            row[0, i] = (
                block.offset,
                block.stored_size,
                block.raw_size,
                block.checksum,
                self.codecs.index(codec),
                0,
            )
        self.groups = np.concatenate([self.groups, group])
        self.blocks = np.concatenate([self.blocks, row]) if len(self.blocks) else row


def pack_footer(index: FileIndex, created_by: str) -> bytes:
    """Footer bytes: (json_length, json_checksum), JSON, padding to 8, group table, block table."""
    info = {
        **index.extra,
        "format_version": list(FORMAT_VERSION),
        "created_by": created_by,
        "schema": index.schema.to_json(),
        "metadata": index.metadata,
        "codecs": index.codecs,
        "num_rows": index.num_rows,
        "num_row_groups": len(index.groups),
        "segment_bytes": index.segment_bytes,
    }
    body = dump_json(info, max_depth=MAX_METADATA_DEPTH + 1)  # metadata is one level down
    head = _LENGTH.pack(len(body), checksum(body)) + body
    head += bytes(-len(head) % 8)
    groups = np.ascontiguousarray(index.groups, GROUP_DTYPE).tobytes()
    blocks = np.ascontiguousarray(index.blocks, BLOCK_DTYPE).tobytes()
    return head + groups + blocks


_KNOWN_KEYS = {
    "format_version",
    "created_by",
    "schema",
    "metadata",
    "codecs",
    "num_rows",
    "num_row_groups",
    "segment_bytes",
}


#: Row numbers are signed 64-bit integers wherever they are used (NumPy indices, ``len()``).
MAX_ROWS = (1 << 63) - 1


def unpack_footer(data: bytes | bytearray | memoryview, path: str | None = None) -> FileIndex:
    """Parse footer bytes (already checked against the trailer's checksum). Every value is
    checked before use: CorruptFileError naming the value when one is missing, of the wrong
    JSON type or out of range. Bytes after the block table are ignored (a later minor version
    may add tables there, named by a footer key). Offsets are checked against the file by the
    caller, who knows where the data region lies."""
    view = memoryview(data)
    if len(view) < _LENGTH.size:
        raise CorruptFileError("footer is shorter than its length field", path=path)
    json_length, json_checksum = _LENGTH.unpack_from(view)
    if json_length > min(MAX_JSON_BYTES, len(view) - _LENGTH.size):
        raise CorruptFileError(f"footer claims {json_length} bytes of JSON", path=path)
    start = _LENGTH.size
    info = parse_json_checked(view[start : start + json_length], json_checksum, "footer JSON", path)
    if not isinstance(info, dict):
        raise CorruptFileError("footer JSON is not an object", path=path)
    missing = sorted(_KNOWN_KEYS - {"created_by"} - set(info))
    if missing:
        raise CorruptFileError(f"footer JSON lacks the required fields {missing}", path=path)
    version = parse_format_version(info["format_version"], path)
    check_version(*version, path, "footer")  # an unknown major: nothing else is parsed
    try:
        schema = Schema.from_json(info["schema"])
    except SchemaError as exc:
        raise CorruptFileError(
            f"footer JSON has an invalid schema: {exc.detail}", path=path, column=exc.column
        ) from exc
    num_groups = json_int(info, "num_row_groups", 0, len(view), "footer JSON", path)
    num_rows = json_int(info, "num_rows", 0, MAX_ROWS, "footer JSON", path)
    segment_bytes = json_int(info, "segment_bytes", 1, MAX_SEGMENT_BYTES, "footer JSON", path)
    codecs = info["codecs"]
    if not isinstance(codecs, list) or not all(
        isinstance(c, dict) and isinstance(c.get("id"), str) and c["id"] for c in codecs
    ):
        raise CorruptFileError(
            "footer JSON codecs must be a list of objects with a string id", path=path
        )
    metadata = info["metadata"]
    if not isinstance(metadata, dict):
        raise CorruptFileError("footer JSON metadata must be an object", path=path)
    table_start = start + json_length
    table_start += -table_start % 8
    groups_end = table_start + num_groups * GROUP_DTYPE.itemsize
    blocks_end = groups_end + num_groups * len(schema) * BLOCK_DTYPE.itemsize
    if blocks_end > len(view):
        raise CorruptFileError(
            f"footer index has {len(view) - table_start} bytes, expected at least "
            f"{blocks_end - table_start} for {num_groups} row groups x {len(schema)} columns",
            path=path,
        )
    groups = np.frombuffer(view[table_start:groups_end], GROUP_DTYPE)
    blocks = np.frombuffer(view[groups_end:blocks_end], BLOCK_DTYPE).reshape(
        num_groups, len(schema)
    )
    index = FileIndex(
        schema,
        metadata,
        [dict(c) for c in codecs],
        groups,
        blocks,
        segment_bytes,
        extra={k: v for k, v in info.items() if k not in _KNOWN_KEYS},
        version=version,
    )
    _check_index(index, num_rows, path)
    return index


def parse_format_version(value: object, path: str | None) -> tuple[int, int]:
    """The footer's ``format_version``: a list of two integers in 0..65535 (the trailer's u16
    fields, which it must equal; the caller compares them)."""
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(type(v) is int and 0 <= v <= 0xFFFF for v in value)
    ):
        raise CorruptFileError(
            f"footer JSON format_version must be [major, minor], got {value!r}", path=path
        )
    return int(value[0]), int(value[1])


def _check_index(index: FileIndex, num_rows: int, path: str | None) -> None:
    """The tables agree with themselves and the JSON: row counts below 2^63, each group's first
    row the sum of the rows before it, codec numbers inside the codec table. Sums are done
    where they cannot wrap: every term is below 2^63, so no uint64 sum of two overflows."""
    groups = index.groups
    if len(groups):
        rows, starts = groups["num_rows"], groups["row_start"]
        if int(rows.max()) > MAX_ROWS or int(starts.max()) > MAX_ROWS:
            raise CorruptFileError(
                f"footer index: a row group has more than {MAX_ROWS} rows or starts beyond",
                path=path,
            )
        if int(starts[0]) != 0 or not np.array_equal(starts[1:], starts[:-1] + rows[:-1]):
            raise CorruptFileError("footer index: row group starts are inconsistent", path=path)
    if index.num_rows != num_rows:
        raise CorruptFileError(
            f"footer says {num_rows} rows but its index covers {index.num_rows}", path=path
        )
    if index.blocks.size and int(index.blocks["codec"].max()) >= len(index.codecs):
        raise CorruptFileError("footer index refers to a codec missing from its table", path=path)
