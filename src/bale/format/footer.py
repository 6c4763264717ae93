"""The footer: schema, metadata, codec table and the binary index of row groups and blocks."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bale.errors import CorruptFileError
from bale.format.constants import FORMAT_VERSION, MAX_JSON_BYTES
from bale.format.header import MAX_METADATA_DEPTH, checksum, dump_json, parse_json_checked
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


def unpack_footer(data: bytes | bytearray | memoryview, path: str | None = None) -> FileIndex:
    """Parse footer bytes (already checked against the trailer's checksum)."""
    view = memoryview(data)
    if len(view) < _LENGTH.size:
        raise CorruptFileError("footer is shorter than its length field", path=path)
    json_length, json_checksum = _LENGTH.unpack_from(view)
    if json_length > min(MAX_JSON_BYTES, len(view)):
        raise CorruptFileError(f"footer claims {json_length} bytes of JSON", path=path)
    start = _LENGTH.size
    info = parse_json_checked(view[start : start + json_length], json_checksum, "footer JSON", path)
    try:
        schema = Schema.from_json(info["schema"])
        num_groups = int(info["num_row_groups"])
        num_rows = int(info["num_rows"])
        codecs = [dict(c) for c in info["codecs"]]
        metadata = dict(info["metadata"])
        segment_bytes = int(info["segment_bytes"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptFileError(f"footer JSON lacks a required field: {exc}", path=path) from exc
    table_start = start + json_length
    table_start += -table_start % 8
    groups_end = table_start + num_groups * GROUP_DTYPE.itemsize
    blocks_end = groups_end + num_groups * len(schema) * BLOCK_DTYPE.itemsize
    if blocks_end != len(view):
        raise CorruptFileError(
            f"footer index has {len(view) - table_start} bytes, expected "
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
        codecs,
        groups,
        blocks,
        segment_bytes,
        extra={k: v for k, v in info.items() if k not in _KNOWN_KEYS},
    )
    _check_index(index, num_rows, path)
    return index


def _check_index(index: FileIndex, num_rows: int, path: str | None) -> None:
    groups = index.groups
    if len(groups):
        starts = np.concatenate([[0], np.cumsum(groups["num_rows"][:-1], dtype=np.uint64)])
        if not np.array_equal(starts, groups["row_start"]):
            raise CorruptFileError("footer index: row group starts are inconsistent", path=path)
    if index.num_rows != num_rows:
        raise CorruptFileError(
            f"footer says {num_rows} rows but its index covers {index.num_rows}", path=path
        )
    if index.blocks.size and int(index.blocks["codec"].max()) >= len(index.codecs):
        raise CorruptFileError("footer index refers to a codec missing from its table", path=path)
