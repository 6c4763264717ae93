"""Crafted footers (issue 14, item 11): files whose footer was rewritten with every checksum
recomputed, as a hostile file or a buggy tool leaves them. Every value read from the footer is
checked before use, so each of them raises a bale error naming the file (and the column and rows
where known), never OverflowError, MemoryError, ZeroDivisionError, UnicodeDecodeError or rows cut
from the wrong bytes."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bale
from bale._core.dataset import reader_of
from bale._core.layout import read_header, scan_groups
from bale._core.mapped import MappedColumn, map_file
from bale.errors import BaleError, CorruptFileError
from bale.format.constants import MAX_SEGMENT_BYTES
from bale.format.header import checksum
from bale.io.source import LocalSource
from bale.ops.verify import verify
from tests.format.crafting import Footer, craft_footer, header_json_text, write_header_json

ROWS = 10


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("crafted") / "original.bale"
    bale.write(
        path,
        {
            "x": np.arange(3 * ROWS, dtype="float32").reshape(ROWS, 3),
            "raw": np.arange(2 * ROWS, dtype="int16").reshape(ROWS, 2),
            "b": [bytes([255, i]) for i in range(ROWS)],
            "s": [f"s{i}" for i in range(ROWS)],
        },
        codecs={"x": "lz4", "raw": "none", "b": "none", "s": "zstd"},
        row_group_rows=5,
    )
    return path


@pytest.fixture
def copy(original: Path, tmp_path: Path) -> Path:
    path = tmp_path / "crafted.bale"
    shutil.copy(original, path)
    return path


def read_all(path: Path) -> None:
    """Open, and read every column every way there is (slices, rows, gathers, row groups)."""
    with bale.open(path) as ds:
        for name in ds.schema.names:
            ds.read(columns=[name])
            ds.take(np.arange(len(ds))[::-1], [name])
            for i in range(len(ds)):
                ds.row(i, [name])
            for _ in ds.iter_row_groups([name]):
                pass


def assert_refused(
    path: Path, match: str, column: str | None = None, error: type[BaleError] = CorruptFileError
) -> BaleError:
    with pytest.raises(error, match=match) as info:
        read_all(path)
    assert info.value.path == os.fspath(path)
    if column is not None:
        assert info.value.column == column
        assert info.value.rows is not None
    return info.value


def block(group: int, column: int, field: str, value: int) -> Callable[[Footer], None]:
    def change(footer: Footer) -> None:
        footer.blocks[group, column][field] = value

    return change


def group(number: int, **fields: int) -> Callable[[Footer], None]:
    def change(footer: Footer) -> None:
        for field, value in fields.items():
            footer.groups[number][field] = value

    return change


def info(key: str, value: Any) -> Callable[[Footer], None]:
    def change(footer: Footer) -> None:
        footer.info[key] = value

    return change


def raw_json(old: str, new: str) -> Callable[[Footer], None]:
    """Replace text in the footer JSON (for JSON that json.dumps would not write)."""

    def change(footer: Footer) -> None:
        text = json.dumps(footer.info, separators=(",", ":"))
        assert old in text
        footer.json_bytes = text.replace(old, new, 1).encode()

    return change


# -- offsets and sizes: no uint64 wraparound, everything inside the data region ------------------


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (block(0, 0, "offset", 2**64 - 8), "block offset of 18446744073709551608, beyond"),
        (block(1, 2, "offset", 2**63), "block offset of 9223372036854775808, beyond"),
        (block(0, 1, "stored_size", 2**64 - 64), "block stored size of 18446744073709551552"),
        (group(0, offset=2**64 - 64, length=128), "group offset of 18446744073709551552"),
        (group(1, length=2**64 - 1), "group length of 18446744073709551615"),
        (group(0, offset=0), "points outside the data region"),
        (block(0, 0, "offset", 0), "block outside its row group"),
    ],
    ids=[
        "offset_2^64",
        "offset_2^63",
        "size_2^64",
        "group_wraps",
        "length_2^64",
        "group_at_0",
        "block_in_header",
    ],
)
def test_offsets_and_sizes_are_checked_without_wrapping(
    copy: Path, change: Callable[[Footer], None], match: str
) -> None:
    """Was: OverflowError ("Python int too large to convert to C long") on read."""
    craft_footer(copy, change)
    assert_refused(copy, match)


@pytest.mark.parametrize(
    ("column", "raw_size"),
    [(0, 2**40), (0, 2**31), (2, 2**40), (3, 2**40), (3, 2**30 + 1), (2, 61), (1, 21)],
    ids=[
        "lz4_array_1T",
        "lz4_array_2G",
        "none_bytes_1T",
        "zstd_1T",
        "zstd_segmented",
        "none_bytes_off_by_one",
        "none_array_off_by_one",
    ],
)
def test_claimed_decoded_sizes_are_bounded_by_the_stored_bytes(
    copy: Path, column: int, raw_size: int
) -> None:
    """A claimed decoded size above what the block's stored bytes can hold with its codec is
    refused before a buffer is allocated for it (was: MemoryError, "Unable to allocate 1.00 TiB")."""
    craft_footer(copy, block(0, column, "raw_size", raw_size))
    names = ["x", "raw", "b", "s"]
    assert_refused(copy, "block", column=names[column])


def test_lz4_bytes_column_claiming_a_huge_size(tmp_path: Path) -> None:
    path = tmp_path / "lz4.bale"
    bale.write(path, {"b": [b"abc" * i for i in range(ROWS)]}, codecs={"b": "lz4"})
    craft_footer(path, block(0, 0, "raw_size", 2**29))
    error = assert_refused(path, "claims 536870912 decoded bytes", column="b")
    assert "bytes of lz4 cannot hold more than" in str(error)
    craft_footer(path, block(0, 0, "raw_size", 2**40))  # beyond the segment size
    assert_refused(path, "a block of 1099511627776 bytes needs 1024 frames", column="b")


# -- JSON numbers: integers where integers are required, in range -------------------------------


@pytest.mark.parametrize(
    "change",
    [
        raw_json('"segment_bytes":1073741824', '"segment_bytes":1e400'),
        info("segment_bytes", 0),
        info("segment_bytes", -1),
        info("segment_bytes", 1.5),
        info("segment_bytes", 1073741824.0),
        info("segment_bytes", MAX_SEGMENT_BYTES + 1),
        info("segment_bytes", 2**64),
        info("segment_bytes", True),
        info("segment_bytes", "1073741824"),
    ],
    ids=["1e400", "0", "-1", "1.5", "float", "max+1", "2^64", "true", "text"],
)
def test_segment_bytes_out_of_range(copy: Path, change: Callable[[Footer], None]) -> None:
    """Format rule 6: 1 <= segment_bytes <= MAX_SEGMENT_BYTES, an integer (was: OverflowError for
    1e400, ZeroDivisionError for 0)."""
    craft_footer(copy, change)
    assert_refused(copy, "segment_bytes must be an integer in 1..2146435072, got")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (info("num_rows", 10.0), "num_rows must be an integer"),
        (info("num_row_groups", 2.0), "num_row_groups must be an integer"),
        (info("num_row_groups", -1), "num_row_groups must be an integer"),
        (info("num_rows", -10), "num_rows must be an integer"),
        (info("num_rows", True), "num_rows must be an integer"),
        (raw_json('"num_rows":10', '"num_rows":1' + "0" * 5000), "not valid JSON"),
        (raw_json('"metadata":{}', '"metadata":' + "[" * 100_000 + "]" * 100_000), "not valid"),
        (raw_json('"metadata":{}', '"metadata":{"a":NaN}'), "not valid JSON"),
        (info("codecs", ["zstd", "lz4", "none"]), "codecs must be a list of objects"),
        (info("format_version", [1.0, 1]), "format_version must be"),
    ],
    ids=[
        "rows_float",
        "groups_float",
        "groups_negative",
        "rows_negative",
        "rows_true",
        "5000_digits",
        "deep",
        "nan",
        "codec_names",
        "version_float",
    ],
)
def test_json_numbers_are_range_checked(
    copy: Path, change: Callable[[Footer], None], match: str
) -> None:
    """Was: a float accepted as a count, ValueError (int digits limit), RecursionError."""
    craft_footer(copy, change)
    assert_refused(copy, match)


def test_num_rows_of_2_63_or_more(copy: Path) -> None:
    """Row counts from 2^63 on (tables and JSON agreeing) are refused: len() and NumPy indices
    are signed 64-bit (was: OverflowError "cannot fit 'int' into an index-sized integer")."""

    def change(footer: Footer) -> None:
        footer.groups[1]["num_rows"] = 2**63
        footer.info["num_rows"] = 2**63 + 5

    craft_footer(copy, change)
    assert_refused(copy, "num_rows must be an integer in 0..9223372036854775807")

    def wrapping(footer: Footer) -> None:  # row starts that add up only modulo 2^64
        footer.groups[0]["num_rows"] = 2**64 - 5
        footer.groups[1]["row_start"] = 2**64 - 5
        footer.info["num_rows"] = 0

    craft_footer(copy, wrapping)
    assert_refused(copy, "more than 9223372036854775807 rows")


def test_shape_of_1e400_in_the_schema(copy: Path) -> None:
    craft_footer(copy, raw_json('"shape":[3]', '"shape":[1e400]'))
    assert_refused(copy, "invalid schema: array column 'x' needs a shape of non-negative")


@pytest.mark.parametrize("ndim", [64, 10_000])
def test_shape_of_more_dimensions_than_numpy_has(copy: Path, ndim: int) -> None:
    """A row shape of 64 or more dimensions (rows of 3 floats as [1, 1, ..., 3]) is refused when
    the footer is read. It opened, and reading raised NumPy's ValueError ('maximum supported
    dimension for an ndarray is currently 64')."""
    shape = ",".join(["1"] * (ndim - 1) + ["3"])
    craft_footer(copy, raw_json('"shape":[3]', f'"shape":[{shape}]'))
    assert_refused(copy, f"array column 'x' has a shape of {ndim} dimensions, at most 63")


def test_writer_refuses_rows_of_more_than_63_dimensions(tmp_path: Path) -> None:
    with pytest.raises(bale.SchemaError, match="at most 63"):
        bale.Array("uint8", (1,) * 64)
    path = tmp_path / "deep.bale"
    bale.write(path, {"x": np.zeros((2, *(1,) * 63), "uint8")})
    with bale.open(path) as ds:
        assert ds.read()["x"].shape == (2, *(1,) * 63)


# -- columns relabelled ------------------------------------------------------------------------


def test_bytes_column_relabelled_string(copy: Path) -> None:
    """Bytes that are not UTF-8 in a column relabelled "string": a bale error naming the column
    and row, never UnicodeDecodeError. (Passed before this change: Dataset decodes strings
    through one checked helper.)"""

    def change(footer: Footer) -> None:
        footer.info["schema"][2]["kind"] = "string"

    craft_footer(copy, change)
    error = assert_refused(copy, "not UTF-8", column="b")
    assert error.rows == (0, 1)


@pytest.mark.parametrize("shape", [[1], [4], [3], [2, 2]])
def test_mapped_column_whose_row_size_disagrees_with_its_blocks(
    copy: Path, shape: list[int]
) -> None:
    """The zero-copy path (codec "none") checked no block size: rows were cut from the wrong
    bytes (the first group's rows 0..4 served as [0, 1, 2, 3, 4, 10]). Now every way of reading
    refuses, naming the column and rows."""

    def change(footer: Footer) -> None:
        footer.info["schema"][1]["shape"] = shape

    craft_footer(copy, change)
    assert_refused(copy, "block holds 20 bytes, expected", column="raw")
    with bale.open(copy) as ds:
        reader = reader_of(ds)
        assert reader.mapped_column("raw") is None  # not mapped: decoding reports the block
        with open(copy, "rb") as file:
            mapping = map_file(file.fileno())
        try:
            with pytest.raises(CorruptFileError, match="holds 20 bytes") as info_:
                MappedColumn(mapping, reader.index, 1, path=ds.path, verify=False)
            assert info_.value.column == "raw" and info_.value.rows == (0, 5)
        finally:
            mapping.close()


# -- the other JSON a reader parses: header, row groups, frame index -----------------------------


@pytest.mark.parametrize("value", ["1e400", "0", "2.5", "-3", "true"])
def test_header_segment_bytes_out_of_range(copy: Path, value: str) -> None:
    """The header JSON (read by `bale repair`) is checked as the footer is."""

    text = header_json_text(copy)
    new = re.sub(rb'"segment_bytes":\d+', b'"segment_bytes":' + value.encode(), text)
    assert new != text
    write_header_json(copy, new)
    source = LocalSource(copy)
    try:
        with pytest.raises(CorruptFileError, match="header JSON segment_bytes must be") as info_:
            read_header(source)
        assert info_.value.path == os.fspath(copy)
    finally:
        source.close()


@pytest.mark.parametrize("value", [b"1e400", b"-1", b"2.5", b"true"])
def test_group_json_with_numbers_out_of_range_is_not_a_group(copy: Path, value: bytes) -> None:
    """A group JSON whose numbers are not in range (`bale repair`'s scan) is skipped as damaged
    (the scan finds the next group), not an OverflowError or a group placed before its data."""
    source = LocalSource(copy)
    try:
        header = read_header(source)
        assert len(list(scan_groups(source, header))) == 2
    finally:
        source.close()
    data = bytearray(copy.read_bytes())
    length = int.from_bytes(data[header.end + 4 : header.end + 8], "little")
    start = header.end + 16
    body = bytes(data[start : start + length])
    digits = re.search(rb'"checksum":(\d+)', body)
    assert digits is not None and len(digits.group(1)) >= len(value)
    new = body[: digits.start(1)] + value.ljust(len(digits.group(1))) + body[digits.end(1) :]
    data[start : start + length] = new  # JSON allows the spaces after the number
    data[header.end + 8 : header.end + 16] = checksum(new).to_bytes(8, "little")
    copy.write_bytes(bytes(data))
    source = LocalSource(copy)
    try:
        groups = list(scan_groups(source, header))
        assert len(groups) == 1 and groups[0].num_rows == 5 and groups[0].skipped_before > 0
    finally:
        source.close()


@pytest.mark.parametrize("value", [1e300, 2.0, -1, True, 2**64])
def test_frame_index_entry_out_of_range_is_not_used(tmp_path: Path, value: Any) -> None:
    """A frame index entry that does not parse is not used: rows come from whole blocks."""
    path = tmp_path / "framed.bale"
    data = np.arange(4000, dtype="int64")
    bale.write(path, {"x": data}, segment_bytes=4096, codecs={"x": "zstd"})

    def change(footer: Footer) -> None:
        assert "frame_index" in footer.info
        footer.info["frame_index"]["offset"] = value

    craft_footer(path, change)
    with bale.open(path) as ds:
        assert reader_of(ds).frames.records(0, 0) is None
        assert ds[1234]["x"] == 1234
        np.testing.assert_array_equal(ds.read()["x"], data)


# -- a key repeated in one JSON object --------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('"num_rows":10', '"num_rows":99,"num_rows":10'),
        ('"schema":[', '"schema":[],"schema":['),
        ('"metadata":{}', '"metadata":{"a":1,"a":2}'),
    ],
)
def test_footer_json_with_a_repeated_key(copy: Path, old: str, new: str) -> None:
    """A key repeated in one object: Python's json keeps the last, other readers the first, so
    the same bytes read as two different files. It opened; now it is refused."""
    craft_footer(copy, raw_json(old, new))
    with pytest.raises(CorruptFileError, match="appears twice in one object") as info_:
        bale.open(copy)
    assert info_.value.path == os.fspath(copy)


def test_header_and_group_json_with_a_repeated_key(copy: Path) -> None:
    text = header_json_text(copy)
    new = text.replace(b',"created_by":"bale 0.1.0"', b',"metadata":{}')
    assert new != text
    write_header_json(copy, new)
    source = LocalSource(copy)
    try:
        with pytest.raises(CorruptFileError, match="appears twice in one object"):
            read_header(source)
    finally:
        source.close()
    report = verify(copy)
    assert not report.ok and "appears twice in one object" in report.summary()


def test_group_json_with_a_repeated_key(copy: Path) -> None:
    """bale verify reports it, and `bale repair`'s scan does not take it for a row group."""
    source = LocalSource(copy)
    try:
        header = read_header(source)
    finally:
        source.close()
    data = bytearray(copy.read_bytes())
    start = header.end + 16
    length = int.from_bytes(data[header.end + 4 : header.end + 8], "little")
    body = bytes(data[start : start + length])
    new = body.replace(b'{"rows":5,', b'{"rows":5,"rows":5,', 1)
    room = start + length + (-(start + length) % 64) - start
    assert new != body and len(new) <= room
    data[start : start + room] = new.ljust(room, b"\x00")
    data[header.end + 4 : header.end + 8] = len(new).to_bytes(4, "little")
    data[header.end + 8 : header.end + 16] = checksum(new).to_bytes(8, "little")
    copy.write_bytes(bytes(data))
    report = verify(copy)
    assert not report.ok and "appears twice in one object" in report.summary()
    source = LocalSource(copy)
    try:
        groups = list(scan_groups(source, header))
        assert groups[0].num_rows == 5 and groups[0].skipped_before > 0  # the second group
    finally:
        source.close()
