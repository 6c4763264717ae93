"""`bale.ops.verify.verify`: every checksum, every record against the footer, and with ``deep``
every block decoded (issue 14, item 13)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xxhash
import zstandard

import bale
from bale._core.blocks import StoredBlock
from bale._core.groupsink import GroupSink
from bale.errors import CorruptFileError, NotABaleFileError
from bale.format.constants import DEFAULT_SEGMENT_BYTES, GROUP_PREFIX_SIZE, HEADER_PREFIX_SIZE
from bale.format.schema import Array, Bytes, Column, Schema, String
from bale.ops.repair import repair
from bale.ops.verify import verify

ROWS, GROUP = 24, 8


def small_file(path: Path, metadata: dict[str, Any] | None = None) -> None:
    """Three row groups of an array column (zstd), an uncompressed image column and strings."""
    bale.write(
        path,
        {
            "x": np.arange(ROWS, dtype=np.int64),
            "img": np.arange(ROWS * 12, dtype=np.uint8).reshape(ROWS, 2, 2, 3),
            "s": [f"row {i}" for i in range(ROWS)],
        },
        row_group_rows=GROUP,
        codecs={"img": "none", "x": "zstd:3"},
        metadata=metadata or {},
    )


def header_json_span(data: bytes) -> tuple[int, int]:
    length = struct.unpack_from("<I", data, 12)[0]
    return HEADER_PREFIX_SIZE, length


def group_offsets(path: Path) -> list[int]:
    with bale.open(path) as ds:
        return [int(g["offset"]) for g in ds.index.groups]


def flipped(
    data: bytes, at: int, checksum_at: int | None = None, json: range | None = None
) -> bytes:
    """``data`` with byte ``at`` flipped (xor 1: a digit becomes its neighbour, a letter its
    case-less twin); with ``checksum_at``, the JSON's checksum recomputed over ``json``: a
    crafted mismatch rather than damage."""
    out = bytearray(data)
    out[at] ^= 0x01
    if checksum_at is not None and json is not None:
        digest = xxhash.xxh3_64_intdigest(bytes(out[json.start : json.stop]))
        struct.pack_into("<Q", out, checksum_at, digest)
    return bytes(out)


def test_an_intact_file_verifies(tmp_path: Path) -> None:
    path = tmp_path / "a.bale"
    small_file(path)
    for deep in (False, True):
        report = verify(path, deep=deep)
        assert report.ok, report.summary()
        assert (report.rows, report.row_groups, report.blocks_checked) == (ROWS, 3, 9)
        assert report.bytes_checked > 0 and report.deep is deep


def test_every_byte_of_the_header_json_is_checked(tmp_path: Path) -> None:
    """Damage to the header prefix's length and checksum fields and to the header JSON, and
    crafted edits of the JSON (checksum recomputed): `bale repair` would rebuild a footer from
    it, so verify compares it with the footer. Before, 632 of these 634 flips passed verify and
    every read (2 made the file fail to open)."""
    path, target = tmp_path / "a.bale", tmp_path / "t.bale"
    small_file(path)
    data = path.read_bytes()
    start, length = header_json_span(data)
    body = data[start : start + length].decode()
    # created_by is free text with no second copy, which no reader or repair uses: a crafted
    # edit of it is the one change nothing can tell from the original.
    value = body.index('"created_by":"') + len('"created_by":"')
    free_text = range(start + value, start + body.index('"', value))
    missed = []
    for crafted in (False, True):
        positions = range(start, start + length) if crafted else range(12, start + length)
        for at in positions:
            target.write_bytes(
                flipped(data, at, 16, range(start, start + length))
                if crafted
                else flipped(data, at)
            )
            report = verify(target)
            if report.ok:
                missed.append((crafted, at))
                continue
            assert [f.part for f in report.findings] == ["header"] * len(report.findings), at
            assert all(str(target) in str(p) for p in report.problems)
    assert missed == [(True, at) for at in free_text]


def test_every_byte_of_every_group_record_is_checked(tmp_path: Path) -> None:
    """Each row group's BGRP prefix and JSON, damaged and crafted: each flip is reported as a
    problem of that row group, naming the file, the group, its rows and what disagreed. Before,
    all 2,066 flips passed verify and every read."""
    path, target = tmp_path / "a.bale", tmp_path / "t.bale"
    small_file(path)
    data = path.read_bytes()
    checked = 0
    for group, offset in enumerate(group_offsets(path)):
        length = struct.unpack_from("<I", data, offset + 4)[0]
        body = range(offset + GROUP_PREFIX_SIZE, offset + GROUP_PREFIX_SIZE + length)
        first = group * GROUP
        for crafted in (False, True):
            for at in body if crafted else range(offset, body.stop):
                target.write_bytes(
                    flipped(data, at, offset + 8, body) if crafted else flipped(data, at)
                )
                report = verify(target)
                where = (group, at, crafted)
                assert not report.ok, where
                found = [f for f in report.findings if f.part == "row group"]
                assert found and all(f.group == group for f in found), (where, report.summary())
                message = str(found[0].error)
                assert str(target) in message and f"row group {group}" in message, message
                assert f"rows {first}..{first + GROUP - 1}" in message, message
                checked += 1
    assert checked > 1500


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        ({"rows": 7}, "the group JSON says 7 rows, the footer's group table 8"),
        ({"blocks.1.raw_size": 95}, "column 'img': the group JSON says raw_size 95, the footer's"),
        ({"blocks.0.offset": 8}, "column 'x': the group JSON says offset 8, the footer's"),
        ({"blocks.2.checksum": 1}, "column 's': the group JSON says checksum 1, the footer's"),
        ({"blocks.0.codec": {"id": "lz4"}}, 'the group JSON says codec {"id": "lz4"}'),
        ({"blocks": []}, "the group JSON lists 0 blocks, expected one per column (3)"),
    ],
)
def test_a_group_json_that_disagrees_with_the_footer_says_what(
    tmp_path: Path, edit: dict[str, Any], says: str
) -> None:
    """A rewritten group JSON of the same length (padded with spaces, checksum recomputed)."""
    path = tmp_path / "a.bale"
    small_file(path)
    data = bytearray(path.read_bytes())
    offset = group_offsets(path)[1]
    length = struct.unpack_from("<I", data, offset + 4)[0]
    info = json.loads(data[offset + 16 : offset + 16 + length])
    for key, value in edit.items():
        *parents, last = key.split(".")
        node = info
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value
    body = json.dumps(info, separators=(",", ":")).encode()
    assert len(body) <= length
    body += b" " * (length - len(body))
    data[offset + 16 : offset + 16 + length] = body
    struct.pack_into("<Q", data, offset + 8, xxhash.xxh3_64_intdigest(body))
    path.write_bytes(bytes(data))
    report = verify(path)
    assert not report.ok
    assert [f.group for f in report.findings] == [1] * len(report.findings)
    assert says in report.summary(), report.summary()
    assert f"file '{path}', rows 8..15: row group 1: " in report.summary()


def test_nonzero_padding_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "a.bale"
    small_file(path)
    data = bytearray(path.read_bytes())
    with bale.open(path) as ds:
        end = int(ds.index.groups[2]["offset"] + ds.index.groups[2]["length"])
    data[end - 1] = 7  # the last group's padding after its last block
    start, length = header_json_span(bytes(data))
    data[start + length] = 7  # the header's padding
    path.write_bytes(bytes(data))
    report = verify(path)
    assert "1 byte(s) of the row group's padding are not zero" in report.summary()
    assert "1 byte(s) of the header's padding are not zero" in report.summary()
    assert {(f.part, f.group) for f in report.findings} == {("header", None), ("row group", 2)}


def test_a_damaged_block_names_its_column_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "a.bale"
    small_file(path)
    with bale.open(path) as ds:
        record = ds.index.blocks[2, ds.schema.index("s")]
    data = bytearray(path.read_bytes())
    data[int(record["offset"]) + 2] ^= 0xFF
    path.write_bytes(bytes(data))
    for deep in (False, True):
        report = verify(path, deep=deep)
        assert len(report.findings) == 1, report.summary()
        problem = report.findings[0]
        assert (problem.part, problem.group, problem.error.column) == ("block", 2, "s")
        assert problem.error.rows == (16, 24)
        assert "1 damaged block(s) of 9" in report.summary()


def test_an_unfinished_file_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "a.bale"
    small_file(path)
    path.write_bytes(path.read_bytes()[:-100])
    report = verify(path)
    assert not report.ok and report.findings[0].part == "footer"
    assert "bale repair" in report.summary() and str(path) in report.summary()
    not_bale = tmp_path / "n.bale"
    not_bale.write_bytes(b"not a bale file at all" * 4)
    with pytest.raises(NotABaleFileError):
        verify(not_bale)


def test_appended_repaired_and_remetadataed_files_verify(tmp_path: Path) -> None:
    path = tmp_path / "a.bale"
    small_file(path, metadata={"v": 1})
    with bale.Writer(path, mode="a", metadata={"v": 2}, row_group_rows=GROUP) as writer:
        writer.write(
            {
                "x": np.arange(4, dtype=np.int64),
                "img": np.zeros((4, 2, 2, 3), np.uint8),
                "s": ["a", "b", "c", "d"],
            }
        )
    report = verify(path, deep=True)
    assert report.ok, report.summary()
    assert report.rows == ROWS + 4
    assert report.quiet_notes and "metadata differs" in report.to_json()["notes"][0]
    assert "note" not in report.summary()  # an intact file's summary is one line
    cut = tmp_path / "cut.bale"
    cut.write_bytes(path.read_bytes()[:-50])
    repair(cut)
    assert verify(cut, deep=True).ok


# -- what only --deep finds: blocks whose checksums match but whose contents cannot be rows ---


def crafted_file(path: Path, column: Column, raw: bytes, stored: bytes, rows: int) -> None:
    """A file holding one block exactly as given, every checksum and record consistent: what a
    faulty encoder (or a hostile tool) could write."""
    sink = GroupSink.create(str(path), overwrite=True, segment_bytes=DEFAULT_SEGMENT_BYTES)
    sink.start(Schema((column,)), {})
    block = StoredBlock([stored], len(raw), xxhash.xxh3_64_intdigest(stored), dict(column.codec))
    sink.write_group(rows, [block])
    sink.finish({}, commit=True)


def var_rows(*rows: bytes) -> bytes:
    return np.array([len(r) for r in rows], "<u8").tobytes() + b"".join(rows)


NONE, ZSTD = {"id": "none"}, {"id": "zstd", "level": 3}


@pytest.mark.parametrize(
    ("column", "raw", "stored", "says"),
    [
        (Column("s", String(), NONE), var_rows(b"ok", b"\xff\xfe"), None, "row 1 is not UTF-8"),
        (
            Column("s", String(), NONE),
            var_rows(b"\xc3", b"\xa9"),  # one character cut between two rows
            None,
            "rows 0 and 1 are not UTF-8 (a character is split between them)",
        ),
        (
            Column("s", String(), NONE),
            var_rows(b"a", b"\xa9b"),
            None,
            "row 1 is not UTF-8 (invalid start byte)",
        ),
        (Column("b", Bytes(), NONE), var_rows(b"ab")[:8] + b"abc", None, "row lengths add up"),
        (
            Column("x", Array("int64", ()), ZSTD),
            np.arange(3, dtype="<i8").tobytes(),
            zstandard.ZstdCompressor().compress(np.arange(2, dtype="<i8").tobytes()),
            "decoded to 16 bytes, expected 24",
        ),
        (
            Column("x", Array("int64", ()), ZSTD),
            np.arange(3, dtype="<i8").tobytes(),
            b"not zstd at all",
            "column 'x', rows 0..2",
        ),
    ],
)
def test_deep_decodes_what_checksums_cannot_judge(
    tmp_path: Path, column: Column, raw: bytes, stored: bytes | None, says: str
) -> None:
    path = tmp_path / "crafted.bale"
    rows = 3 if isinstance(column.type, Array) else 2
    if isinstance(column.type, Bytes):
        rows = 1
    crafted_file(path, column, raw, raw if stored is None else stored, rows)
    assert verify(path).ok  # as stored, every checksum and record agrees
    report = verify(path, deep=True)
    assert not report.ok
    assert says in report.summary(), report.summary()
    problem = report.findings[0]
    assert (problem.part, problem.group, problem.error.column) == ("block", 0, column.name)
    assert str(path) in str(problem.error)


def test_an_array_block_of_the_wrong_size_is_found_without_decoding(tmp_path: Path) -> None:
    path = tmp_path / "crafted.bale"
    raw = np.arange(5, dtype="<i8").tobytes()
    crafted_file(path, Column("x", Array("int64", ()), NONE), raw, raw, 3)
    report = verify(path)
    assert "holds 40 raw bytes, expected 24 for 3 rows of 8 bytes" in report.summary()


def test_report_json_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "a.bale"
    small_file(path)
    data = bytearray(path.read_bytes())
    data[group_offsets(path)[0]] ^= 0x01  # the BGRP magic of group 0
    path.write_bytes(bytes(data))
    report = verify(path)
    out = report.to_json()
    assert out["ok"] is False and out["row_groups"] == 3 and out["blocks_checked"] == 9
    (problem,) = out["problems"]
    assert problem["part"] == "row group" and problem["row_group"] == 0
    assert problem["rows"] == [0, 8] and "expected magic b'BGRP'" in problem["message"]
    assert isinstance(report.problems[0], CorruptFileError)
    json.dumps(out)


def test_groups_too_large_for_one_read_are_checked_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group over GROUP_READ_BYTES is read record, blocks and padding apart: same findings."""
    path = tmp_path / "a.bale"
    small_file(path)
    data = bytearray(path.read_bytes())
    offsets = group_offsets(path)
    data[offsets[0] + 20] ^= 0x01  # group 0's JSON
    with bale.open(path) as ds:
        record = ds.index.blocks[1, 0]
        end = int(ds.index.groups[2]["offset"] + ds.index.groups[2]["length"])
    data[int(record["offset"])] ^= 0x01  # group 1's first block
    data[end - 1] = 9  # group 2's padding
    path.write_bytes(bytes(data))
    whole = verify(path, deep=True).summary()
    monkeypatch.setattr("bale.ops.verify.GROUP_READ_BYTES", 0)
    apart = verify(path, deep=True)
    assert apart.summary() == whole
    assert [(f.part, f.group) for f in apart.findings] == [
        ("row group", 0),
        ("block", 1),
        ("row group", 2),
    ]


@pytest.mark.parametrize("deep", [False, True])
def test_columns_a_newer_bale_added_are_checked_not_called_damaged(deep: bool) -> None:
    """A codec, dtype or column kind from a later minor version (tests/golden/v1_rules): their
    blocks' checksums are checked, their values cannot be decoded; that is a note naming each
    column, not damage."""
    path = Path(__file__).parents[1] / "golden" / "v1_rules" / "unknown_features.bale"
    report = verify(path, deep=deep)
    assert report.ok, report.summary()
    assert sorted(report.unsupported_columns) == ["half4", "tensor", "zfp"]
    assert "unknown to this bale" in report.summary()
    if deep:
        assert "but those of" in report.summary()


def test_group_json_nested_too_deep_is_a_finding(tmp_path: Path) -> None:
    """A group JSON (its checksum recomputed) of 5,000 nested lists: verify raised Python's
    RecursionError; now it reports the row group, naming its rows."""
    path = tmp_path / "deep.bale"
    bale.write(path, {"x": np.arange(4000, dtype="int64")}, codecs={"x": "none"})
    data = bytearray(path.read_bytes())
    (json_length,) = struct.unpack_from("<I", data, 12)
    group = HEADER_PREFIX_SIZE + json_length
    group += -group % 64
    body = b"[" * 5000 + b"]" * 5000  # inside the group's 32,000-byte block
    data[group + GROUP_PREFIX_SIZE : group + GROUP_PREFIX_SIZE + len(body)] = body
    struct.pack_into("<IQ", data, group + 4, len(body), xxhash.xxh3_64_intdigest(body))
    path.write_bytes(bytes(data))
    report = verify(path)
    assert not report.ok
    found = [p for p in report.findings if "nested too deeply" in str(p.error)]
    assert found and found[0].error.rows == (0, 4000) and found[0].error.path == str(path)
