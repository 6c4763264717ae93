"""The footer: JSON description plus the binary group and block tables, and its checks."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest

import bale
from bale.format.constants import FORMAT_VERSION
from bale.format.footer import (
    BLOCK_DTYPE,
    GROUP_DTYPE,
    BlockRecord,
    FileIndex,
    pack_footer,
    unpack_footer,
)
from bale.format.header import checksum, dump_json
from bale.format.schema import Array, Bytes, Column, Schema, String

ZSTD = {"id": "zstd", "level": 3}
LZ4 = {"id": "lz4", "acceleration": 1}
SCHEMA = Schema(
    (
        Column("x", Array("float32", (3,)), ZSTD),
        Column("b", Bytes(), LZ4),
        Column("s", String(), ZSTD),
    )
)


def _index(group_rows: tuple[int, ...] = (10, 10, 5)) -> FileIndex:
    index = FileIndex.empty(SCHEMA, {"split": "train", "n": [1, 2]}, 1 << 20)
    offset = 128
    for g, rows in enumerate(group_rows):
        blocks = [
            BlockRecord(offset + 64, 100 + g, 120, 0xABCDEF00 + g, ZSTD),
            BlockRecord(offset + 192, 50, 60, 7, LZ4 if g % 2 == 0 else ZSTD),
            BlockRecord(offset + 256, 30, 40, 8, ZSTD),
        ]
        index.append_group(rows, offset, 320, blocks)
        offset += 320
    return index


def _split(footer: bytes) -> tuple[dict[str, Any], bytes]:
    """(footer JSON, binary tables) of packed footer bytes."""
    length, _ = struct.unpack_from("<QQ", footer)
    info = json.loads(footer[16 : 16 + length])
    start = 16 + length
    start += -start % 8
    return info, footer[start:]


def _build(info: dict[str, Any], tables: bytes) -> bytes:
    """Footer bytes from its parts, in the format's layout (independent of pack_footer)."""
    body = dump_json(info)
    head = struct.pack("<QQ", len(body), checksum(body)) + body
    return head + bytes(-len(head) % 8) + tables


# -- round trips --------------------------------------------------------------------------------


def test_append_group_fills_the_tables() -> None:
    index = _index()
    assert index.num_rows == 25
    assert index.groups["row_start"].tolist() == [0, 10, 20]
    assert index.groups["num_rows"].tolist() == [10, 10, 5]
    assert index.groups["offset"].tolist() == [128, 448, 768]
    assert index.blocks.shape == (3, 3)
    # equal codec configs share one table entry
    assert index.codecs == [ZSTD, LZ4]
    assert index.codec_at(0, 1) == LZ4
    assert index.codec_at(1, 1) == ZSTD
    assert index.blocks[2, 0]["stored_size"] == 102
    assert index.blocks[1, 0]["checksum"] == 0xABCDEF01


def test_footer_round_trip() -> None:
    index = _index()
    restored = unpack_footer(pack_footer(index, "bale test"))
    assert restored.schema == SCHEMA
    assert restored.metadata == {"split": "train", "n": [1, 2]}
    assert restored.codecs == index.codecs
    assert restored.segment_bytes == 1 << 20
    assert restored.num_rows == 25
    assert restored.extra == {}
    assert restored.groups.dtype == GROUP_DTYPE
    assert restored.blocks.dtype == BLOCK_DTYPE
    assert np.array_equal(restored.groups, index.groups)
    assert np.array_equal(restored.blocks, index.blocks)


def test_empty_index_round_trip() -> None:
    index = FileIndex.empty(SCHEMA, {}, 4096)
    assert index.num_rows == 0
    restored = unpack_footer(pack_footer(index, "bale test"))
    assert restored.num_rows == 0
    assert restored.groups.shape == (0,)
    assert restored.blocks.shape == (0, 3)
    assert restored.schema == SCHEMA


def test_footer_layout() -> None:
    index = _index()
    footer = pack_footer(index, "bale 9.9")
    info, tables = _split(footer)
    assert info["format_version"] == list(FORMAT_VERSION)
    assert info["created_by"] == "bale 9.9"
    assert info["num_rows"] == 25
    assert info["num_row_groups"] == 3
    assert info["schema"] == SCHEMA.to_json()
    length, digest = struct.unpack_from("<QQ", footer)
    assert digest == checksum(footer[16 : 16 + length])
    assert tables == index.groups.tobytes() + index.blocks.tobytes()
    assert len(tables) == 3 * 32 + 9 * 40
    assert (len(footer) - len(tables)) % 8 == 0


def test_block_record_group_json_is_relative() -> None:
    record = BlockRecord(1000, 10, 20, 30, LZ4)
    assert record.to_group_json(936) == {
        "offset": 64,
        "stored_size": 10,
        "raw_size": 20,
        "checksum": 30,
        "codec": LZ4,
    }


# -- forward compatibility ----------------------------------------------------------------------


def test_unknown_optional_fields_are_kept_in_extra_and_ignored() -> None:
    index = _index()
    info, tables = _split(pack_footer(index, "bale test"))
    info["statistics"] = {"x": {"min": 0, "max": 1}}
    info["written_on"] = "2030-01-01"
    restored = unpack_footer(_build(info, tables))
    assert restored.extra == {"statistics": {"x": {"min": 0, "max": 1}}, "written_on": "2030-01-01"}
    assert restored.num_rows == 25
    assert np.array_equal(restored.blocks, index.blocks)
    # and written back unchanged when the footer is rewritten (e.g. by an append)
    again, _ = _split(pack_footer(restored, "bale test"))
    assert again["statistics"] == {"x": {"min": 0, "max": 1}}
    assert again["written_on"] == "2030-01-01"
    assert unpack_footer(pack_footer(restored, "bale test")).extra == restored.extra


def test_extra_fields_cannot_override_known_ones() -> None:
    index = _index()
    index.extra = {"note": 1}
    info, _ = _split(pack_footer(index, "bale test"))
    assert info["num_rows"] == 25
    assert info["note"] == 1


# -- consistency checks -------------------------------------------------------------------------


def _valid() -> tuple[dict[str, Any], bytes]:
    return _split(pack_footer(_index(), "bale test"))


def test_footer_shorter_than_its_length_field() -> None:
    with pytest.raises(bale.CorruptFileError, match="shorter"):
        unpack_footer(b"\x00" * 15, "f.bale")


def test_footer_json_length_past_the_end() -> None:
    footer = pack_footer(_index(), "bale test")
    bad = struct.pack("<Q", len(footer) + 1) + footer[8:]
    with pytest.raises(bale.CorruptFileError, match="claims"):
        unpack_footer(bad)


def test_footer_json_checksum_mismatch() -> None:
    footer = bytearray(pack_footer(_index(), "bale test"))
    footer[20] ^= 0x01  # inside the JSON
    with pytest.raises(bale.CorruptFileError, match="checksum"):
        unpack_footer(bytes(footer))


@pytest.mark.parametrize(
    "field", ["schema", "num_row_groups", "num_rows", "codecs", "metadata", "segment_bytes"]
)
def test_footer_lacking_a_required_field(field: str) -> None:
    info, tables = _valid()
    del info[field]
    with pytest.raises(bale.CorruptFileError, match="required field") as exc:
        unpack_footer(_build(info, tables), "f.bale")
    assert exc.value.path == "f.bale"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("schema", [{"name": "x", "kind": 5, "codec": ZSTD}]),
        ("schema", [{"name": 1, "kind": "bytes", "codec": ZSTD}]),
        (
            "schema",
            [{"name": "x", "kind": "array", "dtype": "uint8", "shape": [2.0], "codec": ZSTD}],
        ),
        (
            "schema",
            [{"name": "x", "kind": "array", "dtype": "uint8", "shape": [-1], "codec": ZSTD}],
        ),
        ("schema", [{"name": "x", "kind": "bytes", "codec": "zstd"}]),
        ("schema", {"x": 1}),
        ("num_rows", "many"),
        ("metadata", [1, 2]),
        ("codecs", 5),
    ],
)
def test_footer_with_an_invalid_field(field: str, value: Any) -> None:
    info, tables = _valid()
    info[field] = value
    with pytest.raises(bale.CorruptFileError):
        unpack_footer(_build(info, tables))


def test_footer_json_not_an_object() -> None:
    with pytest.raises(bale.CorruptFileError):
        unpack_footer(_build([1, 2, 3], b""))  # type: ignore[arg-type]


@pytest.mark.parametrize("delta", [-1, -40, -8])
def test_footer_tables_too_short(delta: int) -> None:
    info, tables = _valid()
    with pytest.raises(bale.CorruptFileError, match="footer index has"):
        unpack_footer(_build(info, tables[:delta]))


@pytest.mark.parametrize("extra", [1, 32, 1000])
def test_bytes_after_the_block_table_are_ignored(extra: int) -> None:
    """A later minor version may add tables after the block table (format rule 3)."""
    info, tables = _valid()
    index = unpack_footer(_build(info, tables + bytes(range(256)) * 4)[: -1024 + extra])
    assert index.num_rows == 25
    assert index.blocks.tobytes() == _index().blocks.tobytes()


def test_footer_group_count_disagreeing_with_the_tables() -> None:
    info, tables = _valid()
    info["num_row_groups"] = 2
    with pytest.raises(bale.CorruptFileError):
        unpack_footer(_build(info, tables))


def test_footer_row_starts_inconsistent() -> None:
    index = _index()
    groups = index.groups.copy()
    groups["row_start"][2] = 19
    info, _ = _valid()
    with pytest.raises(bale.CorruptFileError, match="row group starts"):
        unpack_footer(_build(info, groups.tobytes() + index.blocks.tobytes()))


def test_footer_row_count_disagreeing_with_the_index() -> None:
    info, tables = _valid()
    info["num_rows"] = 26
    with pytest.raises(bale.CorruptFileError, match="26 rows"):
        unpack_footer(_build(info, tables))


def test_footer_block_refers_to_a_missing_codec() -> None:
    index = _index()
    blocks = index.blocks.copy()
    blocks["codec"][1, 2] = 2  # the table has two entries
    info, _ = _valid()
    with pytest.raises(bale.CorruptFileError, match="codec"):
        unpack_footer(_build(info, index.groups.tobytes() + blocks.tobytes()))
    info["codecs"] = [*info["codecs"], {"id": "none"}]
    assert unpack_footer(_build(info, index.groups.tobytes() + blocks.tobytes())).codec_at(
        1, 2
    ) == {"id": "none"}
