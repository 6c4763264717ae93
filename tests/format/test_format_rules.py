"""The format's stability rules (issue 14, item 16; docs/FORMAT.md) that need no golden file: bool
bytes other than 0 and 1, reserved fields, unknown codecs in blocks of no bytes. The golden files
of tests/golden/v1_rules pin the others."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

import bale
from bale._core.dataset import reader_of
from bale.codecs import UnsupportedCodec, codec_from_config, stored_codec
from bale.errors import (
    CodecError,
    CorruptFileError,
    UnsupportedFeatureError,
    UnsupportedVersionError,
)
from bale.format.constants import TRAILER_SIZE
from bale.format.header import checksum
from bale.ops.repair import repair
from tests.format.crafting import Footer, craft_footer

ROWS = 64
BYTES = np.array([0, 1, 2, 255, 0, 128, 1, 7], "uint8")


def _bool_file(path: Path, codec: str, **options: int) -> np.ndarray:
    """A file whose column "flag" holds bytes other than 0 and 1 under dtype bool (written as
    uint8, then relabelled in the footer: a crafted file), and what a reader must return."""
    stored = np.resize(BYTES, (ROWS, 4))
    bale.write(path, {"flag": stored, "n": np.arange(ROWS)}, codecs={"flag": codec}, **options)

    def relabel(footer: Footer) -> None:
        footer.info["schema"][0]["dtype"] = "bool"

    craft_footer(path, relabel)
    return stored != 0


@pytest.mark.parametrize(
    ("codec", "options"),
    [
        ("none", {}),  # mapped: rows gathered from the file's mapping
        ("zstd", {}),  # decoded blocks
        ("lz4", {"row_group_rows": 7}),
        ("none", {"segment_bytes": 64}),  # segmented: single rows read frame by frame
        ("zstd", {"segment_bytes": 64}),
    ],
    ids=["none_mapped", "zstd", "lz4_groups", "none_frames", "zstd_frames"],
)
def test_bool_bytes_other_than_0_and_1_read_as_true(
    tmp_path: Path, codec: str, options: dict[str, int]
) -> None:
    """Format rule 7: any non-zero byte of a bool is True, and what a reader returns holds only 0
    and 1 (NumPy's bools are undefined for other bytes: ``x == True`` and sums went wrong)."""
    path = tmp_path / "flags.bale"
    expected = _bool_file(path, codec, **options)
    with bale.open(path) as ds:
        if codec == "none" and not options:
            assert reader_of(ds).mapped_column("flag") is not None
        n = len(ds)
        reads = [
            ds.read(columns=["flag"])["flag"],
            ds.take(np.arange(n)[::-1], ["flag"])["flag"][::-1],
            np.stack([ds.row(i, ["flag"])["flag"] for i in range(n)]),
            np.concatenate([g["flag"] for g in ds.iter_row_groups(["flag"])]),
            np.stack([ds.take([i], ["flag"])["flag"][0] for i in range(n)]),
        ]
        for got in reads:
            assert got.dtype == np.bool_
            assert int(got.view(np.uint8).max()) == 1
            np.testing.assert_array_equal(got, expected)
            assert int(got.sum()) == int(expected.sum())


def test_reserved_fields_are_ignored(tmp_path: Path) -> None:
    """Format rule 7: the block table's and the trailer's reserved u32 may be non-zero (a later
    minor may use them); readers ignore them."""
    path = tmp_path / "reserved.bale"
    data = {"x": np.arange(30, dtype="float32"), "b": [b"%d" % i for i in range(30)]}
    bale.write(path, data, row_group_rows=10)

    def change(footer: Footer) -> None:
        footer.blocks["reserved"] = 0xDEADBEEF
        footer.reserved = 12345

    craft_footer(path, change)
    raw = path.read_bytes()
    assert struct.unpack_from("<I", raw, len(raw) - TRAILER_SIZE + 28) == (12345,)
    with bale.open(path) as ds:
        got = ds.read()
    np.testing.assert_array_equal(got["x"], data["x"])
    assert got["b"] == data["b"]


def test_unknown_codec_in_blocks_of_no_bytes_reads(tmp_path: Path) -> None:
    """Format rule 5: a zero-size block needs no decoding, whatever its codec, known or not."""
    path = tmp_path / "empty.bale"
    bale.write(path, {"e": np.zeros((20, 0), "int16"), "n": np.arange(20)}, row_group_rows=8)

    def change(footer: Footer) -> None:
        footer.info["codecs"].append({"id": "zfp-9"})
        footer.blocks["codec"][:, 0] = len(footer.info["codecs"]) - 1

    craft_footer(path, change)
    with bale.open(path) as ds:
        assert ds.read()["e"].shape == (20, 0)
        assert ds[5]["e"].shape == (0,)


def test_unknown_codec_opens_and_raises_on_decode(tmp_path: Path) -> None:
    path = tmp_path / "zfp.bale"
    bale.write(path, {"x": np.arange(20.0), "n": np.arange(20)}, codecs={"x": "lz4"})

    def change(footer: Footer) -> None:
        footer.info["codecs"][footer.blocks["codec"][0, 0]] = {"id": "zfp-9", "rate": 4}

    craft_footer(path, change)
    with bale.open(path) as ds:
        np.testing.assert_array_equal(ds.read(columns=["n"])["n"], np.arange(20))
        with pytest.raises(UnsupportedFeatureError, match="unknown codec 'zfp-9'") as info:
            ds.take([3], ["x"])
        assert info.value.column == "x" and info.value.rows == (0, 20)


def test_stored_codec_gives_a_stand_in_for_unknown_ids_only() -> None:
    codec = stored_codec({"id": "zfp-9", "rate": 4})
    assert isinstance(codec, UnsupportedCodec)
    assert codec.config() == {"id": "zfp-9", "rate": 4}
    with pytest.raises(UnsupportedFeatureError, match="zfp-9"):
        codec.decode(memoryview(b"x"), 1)
    assert stored_codec({"id": "zstd", "level": 3, "zz_new": 1}) == codec_from_config(
        {"id": "zstd", "level": 3}
    )
    for bad in ({"id": ""}, {"id": 3}, {}, ["zstd"], "zstd"):
        with pytest.raises(CodecError):
            stored_codec(bad)
    with pytest.raises(CodecError, match="unknown codec id"):  # writing still refuses them
        codec_from_config({"id": "zfp-9"})


def test_a_1_0_append_to_a_1_1_file_is_refused_and_repair_recovers_it(tmp_path: Path) -> None:
    """FORMAT.md's frame index section: a bale of format 1.0 appending to a 1.1 file left the
    header's minor 1 above the trailer's 0 (and the frame_index key as it was). The version
    rules make that damage, and `bale repair` rebuilds the footer from the row groups."""
    path = tmp_path / "legacy.bale"
    values = np.arange(4000, dtype="int64")
    bale.write(path, {"x": values}, segment_bytes=4096, codecs={"x": "zstd"})

    def as_a_1_0_writer_leaves_it(footer: Footer) -> None:
        assert "frame_index" in footer.info
        footer.minor = 0
        footer.info["format_version"] = [1, 0]

    craft_footer(path, as_a_1_0_writer_leaves_it)
    with pytest.raises(
        CorruptFileError, match=r"header says format version 1\.1, the trailer 1\.0"
    ):
        bale.open(path)
    report = repair(path)
    assert report.rows == 4000 and not report.damaged_row_groups
    with bale.open(path) as ds:
        np.testing.assert_array_equal(ds.read()["x"], values)


def _cut_footer(path: Path) -> Path:
    """``path`` as a writer killed before its footer leaves it: NAME.partial, no footer."""
    data = path.read_bytes()
    (footer_offset,) = struct.unpack_from("<Q", data, len(data) - TRAILER_SIZE)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data[:footer_offset])
    path.unlink()
    return partial


def test_repair_refuses_a_file_created_by_a_newer_minor(tmp_path: Path) -> None:
    """Repairing a partial whose header says 1.9 wrote a 1.1 footer under it: the result said
    'repaired' and then every open refused it (header minor above the trailer's). Now repair
    refuses before writing anything, and the partial is left for a newer bale."""
    path = tmp_path / "newer.bale"
    bale.write(path, {"x": np.arange(30, dtype="int32")}, row_group_rows=10)
    data = bytearray(path.read_bytes())
    struct.pack_into("<HH", data, 8, 1, 9)  # created by a 1.9 writer
    path.write_bytes(bytes(data))
    partial = _cut_footer(path)
    before = partial.read_bytes()
    with pytest.raises(UnsupportedVersionError, match=r"cannot repair: .* format 1\.9") as info:
        repair(path)
    assert info.value.path == str(partial)
    assert partial.read_bytes() == before and not path.exists()


def test_repair_refuses_row_groups_with_a_codec_of_a_newer_minor(tmp_path: Path) -> None:
    """A row group whose JSON names a codec this bale does not know (a newer writer appended
    it): repair raised UnsupportedFeatureError naming no file. Now it names the file, column
    and rows, and leaves the file unchanged."""
    path = tmp_path / "codec.bale"
    bale.write(path, {"x": np.arange(30, dtype="int32")}, codecs={"x": "none"}, row_group_rows=10)
    data = bytearray(path.read_bytes())
    (json_length,) = struct.unpack_from("<I", data, 12)
    group = 24 + json_length + (-(24 + json_length) % 64)  # the first row group
    group += int.from_bytes(data[group + 4 : group + 8], "little") + 16  # its JSON's end
    group += -group % 64  # its data start
    second = data.index(b"BGRP", group)
    length = int.from_bytes(data[second + 4 : second + 8], "little")
    body = bytes(data[second + 16 : second + 16 + length])
    new = body.replace(b'"codec":{"id":"none"}', b'"codec":{"id":"zfp1"}')
    assert len(new) == len(body) and new != body
    data[second + 16 : second + 16 + length] = new
    struct.pack_into("<Q", data, second + 8, checksum(new))
    path.write_bytes(bytes(data))
    partial = _cut_footer(path)
    before = partial.read_bytes()
    with pytest.raises(UnsupportedFeatureError, match=r"cannot repair: .* codec 'zfp1'") as info:
        repair(path)
    assert (info.value.path, info.value.column, info.value.rows) == (str(partial), "x", (10, 20))
    assert partial.read_bytes() == before and not path.exists()


def test_a_file_of_no_columns_opens(tmp_path: Path) -> None:
    """FORMAT.md, Footer JSON: readers accept an empty schema (older bales wrote such files from
    an empty first batch): the rows are there, with no values."""
    path = tmp_path / "none.bale"
    bale.write(path, {"x": np.arange(3, dtype="int8")})

    def no_columns(footer: Footer) -> None:
        footer.info["schema"], footer.info["codecs"] = [], []
        footer.blocks = footer.blocks[:, :0]

    craft_footer(path, no_columns)
    with bale.open(path) as ds:
        assert (len(ds), ds.schema.names, ds.read(), ds[2]) == (3, [], {}, {})
