"""The fixed-layout parts of a file: header, row-group prefix and trailer; checksums; JSON."""

from __future__ import annotations

import struct

import pytest

import bale
from bale.format.constants import (
    ALIGNMENT,
    FILE_MAGIC,
    FORMAT_VERSION,
    GROUP_MAGIC,
    GROUP_PREFIX_SIZE,
    HEADER_PREFIX_SIZE,
    MAX_JSON_BYTES,
    TRAILER_MAGIC,
    TRAILER_SIZE,
)
from bale.format.header import (
    HeaderPrefix,
    checksum,
    checksum_parts,
    dump_json,
    pack_group_prefix,
    pack_header,
    pack_trailer,
    padding,
    parse_json_checked,
    unpack_group_prefix,
    unpack_header_prefix,
    unpack_trailer,
)

INFO = {"schema": [], "metadata": {"name": "Zürich ✓"}, "segment_bytes": 1 << 30}


def _header_with_version(major: int, minor: int, json_length: int = 2) -> bytes:
    return struct.pack("<8sHHIQ", FILE_MAGIC, major, minor, json_length, 0)


# -- constants and helpers ----------------------------------------------------------------------


def test_format_constants() -> None:
    assert FILE_MAGIC == b"\x89BALE\r\n\x1a"
    assert TRAILER_MAGIC == b"BALE.END"
    assert GROUP_MAGIC == b"BGRP"
    assert FORMAT_VERSION == (1, 1)
    assert (HEADER_PREFIX_SIZE, GROUP_PREFIX_SIZE, TRAILER_SIZE, ALIGNMENT) == (24, 16, 40, 64)


def test_checksum_is_xxh3_64_with_seed_zero() -> None:
    # Reference values of XXH3-64 (seed 0); they are part of the format.
    assert checksum(b"") == 0x2D06800538D394C2
    assert checksum(b"") == checksum(bytearray()) == checksum(memoryview(b""))
    assert checksum(b"a") != checksum(b"b")


@pytest.mark.parametrize(
    "parts",
    [
        [b"hello world"],
        [b"hello", b" ", b"world"],
        [b"", b"abc", b""],
        [bytes(range(256)) * 3, bytearray(b"x" * 1000), memoryview(b"tail")],
    ],
)
def test_checksum_parts_equals_checksum_of_concatenation(parts: list[bytes]) -> None:
    assert checksum_parts(parts) == checksum(b"".join(bytes(p) for p in parts))


@pytest.mark.parametrize(
    ("offset", "pad"), [(0, 0), (1, 63), (24, 40), (63, 1), (64, 0), (65, 63), (1000, 24)]
)
def test_padding_reaches_the_next_alignment(offset: int, pad: int) -> None:
    assert padding(offset) == pad
    assert (offset + pad) % ALIGNMENT == 0


def test_dump_json_is_compact_utf8() -> None:
    assert dump_json({"a": [1, 2], "b": "é✓"}) == '{"a":[1,2],"b":"é✓"}'.encode()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {"x": object()}, {1, 2}])
def test_dump_json_rejects_what_json_cannot_hold(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        dump_json(bad)


# -- header -------------------------------------------------------------------------------------


def test_header_pack_unpack_round_trip() -> None:
    packed = pack_header(INFO)
    assert packed.startswith(FILE_MAGIC)
    assert len(packed) % ALIGNMENT == 0
    prefix = unpack_header_prefix(packed)
    assert (prefix.major, prefix.minor) == FORMAT_VERSION
    body = packed[HEADER_PREFIX_SIZE : HEADER_PREFIX_SIZE + prefix.json_length]
    assert prefix.json_checksum == checksum(body)
    assert parse_json_checked(body, prefix.json_checksum, "header JSON", None) == INFO
    assert prefix.end == len(packed)
    assert set(packed[HEADER_PREFIX_SIZE + prefix.json_length :]) <= {0}


def test_header_prefix_end_is_aligned() -> None:
    for length in (0, 1, 39, 40, 41, 1000):
        end = HeaderPrefix(1, 0, length, 0).end
        assert end % ALIGNMENT == 0
        assert HEADER_PREFIX_SIZE + length <= end < HEADER_PREFIX_SIZE + length + ALIGNMENT


@pytest.mark.parametrize(
    "data",
    [
        b"",
        FILE_MAGIC[:7],  # shorter than the magic itself
        b"PK\x03\x04" + bytes(20),
        b"\x89HDF\r\n\x1a\n" + bytes(16),
        b"\x89bale\r\n\x1a" + bytes(16),
    ],
)
def test_wrong_magic_is_not_a_bale_file(data: bytes) -> None:
    with pytest.raises(bale.NotABaleFileError) as info:
        unpack_header_prefix(data, "some/path")
    assert info.value.path == "some/path"


def test_full_magic_but_cut_header_is_truncated() -> None:
    with pytest.raises(bale.TruncatedFileError, match="cut inside its header"):
        unpack_header_prefix(FILE_MAGIC + bytes(4), "some/path")


@pytest.mark.parametrize("major", [2, 65535])
def test_newer_major_versions_are_unsupported(major: int) -> None:
    with pytest.raises(bale.UnsupportedVersionError, match=f"{major}.0 .*upgrade bale"):
        unpack_header_prefix(_header_with_version(major, 0))


@pytest.mark.parametrize("minor", [0, 1, 7])
def test_major_version_0_is_damage_not_a_newer_format(minor: int) -> None:
    with pytest.raises(
        bale.CorruptFileError, match=f"version 0.{minor}, which does not exist"
    ) as info:
        unpack_header_prefix(_header_with_version(0, minor), "x.bale")
    assert not isinstance(info.value, bale.UnsupportedVersionError)
    assert "upgrade" not in str(info.value) and info.value.path == "x.bale"
    trailer = struct.pack("<QQQHHI8s", 64, 3, 0, 0, minor, 0, TRAILER_MAGIC)
    with pytest.raises(bale.CorruptFileError, match="the trailer is damaged"):
        unpack_trailer(trailer, "x.bale")


def test_newer_minor_version_is_accepted() -> None:
    prefix = unpack_header_prefix(_header_with_version(1, 7))
    assert (prefix.major, prefix.minor) == (1, 7)


def test_implausible_header_json_length_is_corrupt() -> None:
    with pytest.raises(bale.CorruptFileError):
        unpack_header_prefix(_header_with_version(1, 0, MAX_JSON_BYTES + 1))
    assert unpack_header_prefix(_header_with_version(1, 0, MAX_JSON_BYTES)).json_length == (
        MAX_JSON_BYTES
    )


def test_parse_json_checked_rejects_a_checksum_mismatch() -> None:
    body = dump_json(INFO)
    with pytest.raises(bale.CorruptFileError, match="header JSON checksum mismatch") as info:
        parse_json_checked(body, checksum(body) ^ 1, "header JSON", "f.bale")
    assert info.value.path == "f.bale"


@pytest.mark.parametrize("body", [b"{not json", b"\xff{}", b"", b"{} trailing"])
def test_parse_json_checked_rejects_invalid_json(body: bytes) -> None:
    with pytest.raises(bale.CorruptFileError, match="not valid JSON"):
        parse_json_checked(body, checksum(body), "footer JSON", None)


# -- row-group prefix ---------------------------------------------------------------------------


def test_group_prefix_round_trip() -> None:
    body = b'{"rows":3,"blocks":[]}'
    prefix = pack_group_prefix(body)
    assert len(prefix) == GROUP_PREFIX_SIZE
    assert prefix.startswith(GROUP_MAGIC)
    assert unpack_group_prefix(prefix) == (len(body), checksum(body))
    assert unpack_group_prefix(prefix + b"more bytes") == (len(body), checksum(body))


def test_group_prefix_not_found() -> None:
    prefix = pack_group_prefix(b"{}")
    assert unpack_group_prefix(prefix[:-1]) is None
    assert unpack_group_prefix(b"XGRP" + prefix[4:]) is None
    assert unpack_group_prefix(bytes(GROUP_PREFIX_SIZE)) is None
    too_long = struct.pack("<4sIQ", GROUP_MAGIC, MAX_JSON_BYTES + 1, 0)
    assert unpack_group_prefix(too_long) is None


# -- trailer ------------------------------------------------------------------------------------


def test_trailer_round_trip() -> None:
    footer = b"footer bytes" * 10
    trailer = pack_trailer(12345, footer)
    assert len(trailer) == TRAILER_SIZE
    assert trailer.endswith(TRAILER_MAGIC)
    parsed = unpack_trailer(trailer)
    assert parsed is not None
    assert parsed.footer_offset == 12345
    assert parsed.footer_length == len(footer)
    assert parsed.footer_checksum == checksum(footer)
    assert (parsed.major, parsed.minor) == FORMAT_VERSION


def test_trailer_layout() -> None:
    trailer = pack_trailer(64, b"abc")
    assert struct.unpack("<QQQHHI8s", trailer) == (64, 3, checksum(b"abc"), 1, 1, 0, TRAILER_MAGIC)


def test_missing_trailer_reads_as_none() -> None:
    trailer = pack_trailer(64, b"abc")
    assert unpack_trailer(trailer[1:]) is None
    assert unpack_trailer(b"\x00" + trailer) is None
    assert unpack_trailer(trailer[:-1] + b"X") is None
    assert unpack_trailer(bytes(TRAILER_SIZE)) is None


def test_trailer_of_a_newer_major_version_is_unsupported() -> None:
    trailer = struct.pack("<QQQHHI8s", 64, 3, 0, 2, 0, 0, TRAILER_MAGIC)
    with pytest.raises(bale.UnsupportedVersionError):
        unpack_trailer(trailer, "x.bale")
    newer_minor = struct.pack("<QQQHHI8s", 64, 3, 0, 1, 9, 0, TRAILER_MAGIC)
    parsed = unpack_trailer(newer_minor)
    assert parsed is not None
    assert parsed.minor == 9
