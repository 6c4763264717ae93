"""Golden files of every format version: every later bale must read them, value for value.

These tests never write the golden files. If one is missing or its digest changed, the test fails:
the files pin what each bale version wrote and must not be silently regenerated (see
make_golden.py). Each directory (``v1_0``, ``v1_1``) has its own files, described in
golden_spec.py; the files of 1.1 also pin the frame index and the partial reads it allows.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import struct
from pathlib import Path
from typing import Any

import golden_spec  # beside this file (pytest puts its folder on sys.path)
import numpy as np
import pytest
import reference_reader

import bale
from bale._core.dataset import reader_of
from bale.codecs import parse_codec
from bale.format.constants import FILE_MAGIC, TRAILER_MAGIC, TRAILER_SIZE
from bale.format.frames import FRAME_DTYPE, FRAME_INDEX_KEY, FrameIndexInfo, frame_records
from bale.format.header import checksum
from bale.format.schema import Array, String
from bale.ops.repair import repair
from bale.ops.verify import verify

HERE = Path(__file__).resolve().parent


SPEC = golden_spec
#: The independent reader written from docs/FORMAT.md alone (it never imports bale).
REFERENCE = reference_reader
FORMATS = sorted(SPEC.FORMATS)
CASES = [
    pytest.param(fmt, name, id=f"{fmt}/{name}")
    for fmt in FORMATS
    for name in sorted(SPEC.FORMATS[fmt].files)
]
#: Files of 1.1 and later: written with a frame index.
FRAMED = [
    pytest.param(fmt, name, id=f"{fmt}/{name}")
    for fmt in FORMATS
    if SPEC.FORMATS[fmt].version >= (1, 1)
    for name in sorted(SPEC.FORMATS[fmt].files)
]


def golden_path(fmt: str, name: str) -> Path:
    path = HERE / fmt / name
    if not path.is_file():
        pytest.fail(
            f"golden file {path} is missing. Golden files are committed and never regenerated "
            "by tests; restore it from version control (tests/golden/make_golden.py wrote it once)."
        )
    return path


def golden_file(fmt: str, name: str) -> Any:
    return SPEC.FORMATS[fmt].files[name]


@functools.cache
def expected_footers(fmt: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(golden_path(fmt, "expected.json").read_text())
    return result


@pytest.mark.parametrize("fmt", FORMATS)
def test_golden_files_are_unchanged(fmt: str) -> None:
    directory = HERE / fmt
    sums_file = golden_path(fmt, "SHA256SUMS")
    listed: dict[str, str] = {}
    for line in sums_file.read_text().splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    assert sorted(listed) == sorted([*SPEC.FORMATS[fmt].files, "expected.json"])
    present = sorted(p.name for p in directory.iterdir() if p.name != "SHA256SUMS")
    assert present == sorted(listed), "unexpected or missing files in the golden directory"
    for name, digest in listed.items():
        actual = hashlib.sha256(golden_path(fmt, name).read_bytes()).hexdigest()
        assert actual == digest, (
            f"{fmt}/{name} changed (sha256 {actual}, SHA256SUMS says {digest}). Golden files must "
            "not be regenerated: a new format version gets a new directory."
        )
    total = sum(golden_path(fmt, n).stat().st_size for n in listed)
    assert total < SPEC.FORMATS[fmt].max_total_bytes


@pytest.mark.parametrize(("fmt", "name"), CASES)
def test_golden_header_and_trailer_say_their_version(fmt: str, name: str) -> None:
    version = SPEC.FORMATS[fmt].version
    data = golden_path(fmt, name).read_bytes()
    assert data[:8] == FILE_MAGIC
    assert struct.unpack_from("<HH", data, 8) == version
    trailer = data[-TRAILER_SIZE:]
    assert trailer[-8:] == TRAILER_MAGIC
    assert struct.unpack_from("<HH", trailer, 24) == version


def assert_values(got: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    assert list(got) == list(expected), where
    for name, value in expected.items():
        if isinstance(value, np.ndarray):
            assert isinstance(got[name], np.ndarray), (where, name)
            assert got[name].dtype == value.dtype, (where, name)
            assert got[name].shape == value.shape, (where, name)
            # Bytes, not values: NaN payloads, -0.0 and float8 bit patterns must survive.
            assert got[name].tobytes() == value.tobytes(), (where, name)
        else:
            assert got[name] == value, (where, name)


def assert_row(got: dict[str, Any], expected: dict[str, Any], k: int, where: str) -> None:
    assert list(got) == list(expected), (where, k)
    for column, value in expected.items():
        if isinstance(value, np.ndarray):
            got_value = np.asarray(got[column])
            assert got_value.dtype == value.dtype, (where, k, column)
            assert got_value.tobytes() == value[k].tobytes(), (where, k, column)
        else:
            assert got[column] == value[k], (where, k, column)


def picked(expected: dict[str, Any], idx: np.ndarray) -> dict[str, Any]:
    return {
        c: (v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx.tolist()])
        for c, v in expected.items()
    }


@pytest.mark.parametrize(("fmt", "name"), CASES)
def test_golden_footer_matches(fmt: str, name: str) -> None:
    golden = golden_file(fmt, name)
    expected = expected_footers(fmt)[name]
    with bale.open(golden_path(fmt, name)) as ds:
        index = ds.index
        assert len(ds) == expected["num_rows"] == golden.num_rows
        assert list(ds.row_group_sizes) == expected["row_group_sizes"]
        assert ds.row_group_sizes == golden.row_group_sizes
        assert ds.metadata == expected["metadata"] == golden.metadata
        assert index.schema.to_json() == expected["schema"]
        assert index.codecs == expected["codecs"]
        assert index.segment_bytes == expected["segment_bytes"]
        assert index.extra == expected["extra_footer_fields"]
        if golden.segment_bytes is not None:
            assert index.segment_bytes == golden.segment_bytes
        # The schema is the one the spec gave, with the codecs it asked for.
        assert ds.schema.names == list(golden.schema)
        for column in ds.schema:
            assert column.type == golden.schema[column.name], column.name
            assert column.codec["id"] == parse_codec(golden.codecs[column.name]).id
        # Each block records the codec it was written with: the column's, or the one an
        # appending session asked for.
        group_codecs = golden.group_codecs()
        assert len(group_codecs) == ds.num_row_groups
        for g in range(ds.num_row_groups):
            for c, column in enumerate(ds.schema):
                want = parse_codec(group_codecs[g][column.name]).id
                assert index.codec_at(g, c)["id"] == want, (g, column.name)


# -- value hashes: what every reader must decode (docs/FORMAT.md, *Value hashes*) ----------------


@pytest.mark.parametrize(("fmt", "name"), CASES)
def test_golden_value_hashes(fmt: str, name: str) -> None:
    """Each column's decoded values hash to what expected.json records, whether bale decodes
    them or the reference reader does (written from FORMAT.md, never importing bale), and the
    spec's formulas give the same values."""
    golden = golden_file(fmt, name)
    recorded = expected_footers(fmt)[name]["values"]
    path = golden_path(fmt, name)
    reference = REFERENCE.read(path)
    formula = golden.values()
    with bale.open(path) as ds:
        decoded = ds.read()
        assert sorted(recorded) == sorted(ds.schema.names)
        for column in ds.schema:
            want = recorded[column.name]
            assert want["rows"] == len(ds) == reference.num_rows == golden.num_rows
            where = (fmt, name, column.name)
            assert SPEC.value_hash(column.type, decoded[column.name]) == want["value_xxh3"], where
            assert reference.value_hash(column.name) == want["value_xxh3"], where
            assert SPEC.value_hash(column.type, formula[column.name]) == want["value_xxh3"], where
            # Not only the hashes: the bytes the two readers give are the same.
            assert reference.canonical_bytes(column.name) == SPEC.canonical_bytes(
                column.type, decoded[column.name]
            ), where


def wrongly_decoded(values: Any, row: int) -> Any:
    """``values`` with one row changed the way a buggy decoder might: one bit flipped in an
    array row, one byte more in a bytes or string row."""
    if isinstance(values, np.ndarray):
        changed = values.copy()
        flat = changed[row : row + 1].view(np.uint8).reshape(-1)
        flat[0] ^= 1  # bool: True <-> False
        return changed
    changed = list(values)
    changed[row] = changed[row] + (b"\x00" if isinstance(changed[row], bytes) else "\x00")
    return changed


@pytest.mark.parametrize(("fmt", "name"), [c for c in CASES if c.values[1] != "empty.bale"])
def test_value_hash_catches_a_wrong_decode(fmt: str, name: str) -> None:
    """The check can fail: one bit wrong in any row of any column, or two rows swapped, and the
    hash no longer matches expected.json."""
    recorded = expected_footers(fmt)[name]["values"]
    with bale.open(golden_path(fmt, name)) as ds:
        decoded = ds.read()
        n = len(ds)
        for column in ds.schema:
            values = decoded[column.name]
            want = recorded[column.name]["value_xxh3"]
            for row in sorted({0, n // 2, n - 1}):
                got = SPEC.value_hash(column.type, wrongly_decoded(values, row))
                assert got != want, (name, column.name, row)
            swapped = np.arange(n)
            swapped[[0, n - 1]] = swapped[[n - 1, 0]]
            if isinstance(values, np.ndarray):
                if values[0].tobytes() == values[n - 1].tobytes():
                    continue
                reordered: Any = values[swapped]
            else:
                if values[0] == values[n - 1]:
                    continue
                reordered = [values[i] for i in swapped]
            assert SPEC.value_hash(column.type, reordered) != want, (name, column.name)


@pytest.mark.parametrize(("fmt", "name"), CASES)
def test_golden_values(fmt: str, name: str) -> None:
    golden = golden_file(fmt, name)
    expected = golden.values()
    n = golden.num_rows
    with bale.open(golden_path(fmt, name)) as ds:
        assert_values(ds.read(), expected, "read()")
        # Row by row.
        for k in range(n):
            assert_row(ds[k], expected, k, "cached rows")
        # A gather in reverse order, group by group, and column views.
        order = np.arange(n)[::-1]
        assert_values(ds.take(order), picked(expected, order), "take")
        start = 0
        for g, batch in enumerate(ds.iter_row_groups()):
            stop = start + ds.row_group_sizes[g]
            assert_values(batch, {c: v[start:stop] for c, v in expected.items()}, f"group {g}")
            start = stop
        assert start == n
        for column, value in expected.items():
            view = ds[column]
            assert len(view) == n
            if isinstance(value, np.ndarray):
                assert view.shape == value.shape and view.dtype == value.dtype
                assert np.asarray(view).tobytes() == value.tobytes()
            else:
                assert view[:] == value


def scattered(n: int) -> np.ndarray:
    """2n row numbers in no order, each row about twice, every third one negative."""
    k = np.arange(2 * n, dtype=np.int64)
    idx = (k * 37 + 11) % n
    return np.where(k % 3 == 2, idx - n, idx)


@pytest.mark.parametrize(("fmt", "name"), CASES)
@pytest.mark.parametrize("cache_bytes", [0, 4096, 1 << 20])
@pytest.mark.parametrize("checked", [True, False], ids=["verify", "no-verify"])
def test_golden_values_read_cold(fmt: str, name: str, cache_bytes: int, checked: bool) -> None:
    """Rows, gathers and column views before anything is cached: in files with a frame index
    they come from the frames holding them (with ``cache_bytes=0``, every time)."""
    golden = golden_file(fmt, name)
    expected = golden.values()
    n = golden.num_rows
    if n == 0:
        pytest.skip("no rows")
    path = golden_path(fmt, name)
    with bale.open(path, verify=checked, cache_bytes=cache_bytes) as ds:
        for k in range(n):
            assert_row(ds[k], expected, k, "row")
        for k in range(0, n, 3):
            for column in expected:
                got = ds.row(k - n, [column])
                assert_row(got, {column: expected[column]}, k, "row(i, [column])")
    idx = scattered(n)
    with bale.open(path, verify=checked, cache_bytes=cache_bytes) as ds:
        assert_values(ds.take(idx), picked(expected, idx % n), "take")
        assert_values(ds.take(idx[:5]), picked(expected, idx[:5] % n), "take of a few")
        mask = np.arange(n) % 3 == 1
        assert_values(ds[mask], picked(expected, np.flatnonzero(mask)), "mask")
    with bale.open(path, verify=checked, cache_bytes=cache_bytes) as ds:
        for column, value in expected.items():
            some = idx[: max(1, n // 4)]
            got = ds[column][some]
            assert_values({column: got}, picked({column: value}, some % n), f"{column}[idx]")
        lo, hi = n // 3, n - n // 4
        assert_values(ds[lo:hi], {c: v[lo:hi] for c, v in expected.items()}, "slice")


@pytest.mark.parametrize(("fmt", "name"), CASES)
def test_golden_file_repairs_from_its_row_groups(fmt: str, name: str, tmp_path: Path) -> None:
    """Group headers and the header of a file are enough to rebuild it (repair); the rebuilt
    file carries the metadata given at creation (the header's). A frame index between the
    last group and the footer is dropped (format 1.1)."""
    golden = golden_file(fmt, name)
    copy = tmp_path / name
    shutil.copyfile(golden_path(fmt, name), copy)
    data = copy.read_bytes()
    footer_offset = struct.unpack_from("<Q", data, len(data) - TRAILER_SIZE)[0]
    copy.write_bytes(data[:footer_offset])  # as if the writer died before writing its footer
    report = repair(copy)
    assert report.rows == golden.num_rows
    assert report.row_groups == len(golden.row_group_sizes)
    assert report.damaged_row_groups == []
    with bale.open(copy) as ds:
        assert ds.metadata == golden.phases[0].metadata
        assert ds.row_group_sizes == golden.row_group_sizes
        assert FRAME_INDEX_KEY not in ds.index.extra
        assert_values(ds.read(), golden.values(), "repaired")


APPENDABLE = [
    pytest.param(fmt, name, id=f"{fmt}/{name}")
    for fmt, name in [
        ("v1_0", "appended.bale"),
        ("v1_0", "all_kinds.bale"),
        ("v1_0", "segmented.bale"),
        ("v1_1", "appended_frames.bale"),
        ("v1_1", "frames_var.bale"),
        ("v1_1", "frames_zstd.bale"),
    ]
]


@pytest.mark.parametrize(("fmt", "name"), APPENDABLE)
def test_golden_file_accepts_appends(fmt: str, name: str, tmp_path: Path) -> None:
    golden = golden_file(fmt, name)
    copy = tmp_path / name
    shutil.copyfile(golden_path(fmt, name), copy)
    n = golden.num_rows
    more = golden.columns(range(n, n + 5))
    with bale.Writer(copy, mode="a", metadata={"later": True}) as w:
        w.write(more)
    with bale.open(copy) as ds:
        assert len(ds) == n + 5
        assert ds.metadata == {**golden.metadata, "later": True}
        assert_values(ds.read(), golden.columns(range(n + 5)), "appended")
        if golden.segment_bytes is not None:
            # The appending (1.1) writer indexes the frames of every group, old and new.
            info = FrameIndexInfo.from_extra(ds.index.extra)
            assert info is not None and info.groups == ds.num_row_groups
    assert verify(copy).ok
    # The golden rows' bytes were not moved.
    original = golden_path(fmt, name).read_bytes()
    with bale.open(golden_path(fmt, name)) as ds:
        last = ds.index.groups[-1]
        data_end = int(last["offset"] + last["length"])
    assert copy.read_bytes()[:data_end] == original[:data_end]


# -- format 1.1: the frame index -----------------------------------------------------------------


def frame_counts_of(ds: bale.Dataset) -> np.ndarray:
    raw = ds.index.blocks["raw_size"].astype(np.int64)
    segment = ds.index.segment_bytes
    return np.where(raw > segment, -(-raw // segment), 0)


@pytest.mark.parametrize(("fmt", "name"), FRAMED)
def test_golden_frame_index_covers_every_segmented_block(fmt: str, name: str) -> None:
    path = golden_path(fmt, name)
    with bale.open(path) as ds:
        info = FrameIndexInfo.from_extra(ds.index.extra)
        assert info is not None, "a 1.1 golden file has a frame_index footer key"
        assert info.to_json() == ds.index.extra[FRAME_INDEX_KEY]
        assert info.groups == ds.num_row_groups
        counts = frame_counts_of(ds)
        assert counts.max() >= 3  # blocks of several frames: what the file is there to pin
        assert info.length == int(counts.sum()) * FRAME_DTYPE.itemsize
        region = path.read_bytes()[info.offset : info.offset + info.length]
        assert checksum(region) == info.checksum
        # The region lies between the last row group and the footer.
        last = ds.index.groups[-1]
        assert info.offset >= int(last["offset"] + last["length"])
        # Its records are the blocks' frames: (offset after the length field, XXH3 of the frame).
        reader = reader_of(ds)
        records = np.frombuffer(region, FRAME_DTYPE)
        at = 0
        for g in range(ds.num_row_groups):
            for p in range(len(ds.schema)):
                count = int(counts[g, p])
                block = ds.index.blocks[g, p]
                if count == 0:
                    assert reader.frames.records(g, p) is None
                    continue
                want = frame_records(
                    [reader.payload(g, p)], int(block["raw_size"]), ds.index.segment_bytes
                )
                np.testing.assert_array_equal(records[at : at + count], want)
                np.testing.assert_array_equal(reader.frames.records(g, p), want)
                at += count
        assert at == len(records)


@pytest.mark.parametrize(("fmt", "name"), FRAMED)
def test_golden_framed_file_verifies(fmt: str, name: str) -> None:
    golden = golden_file(fmt, name)
    report = verify(golden_path(fmt, name))
    assert report.ok, report.summary()
    assert report.rows == golden.num_rows
    assert report.blocks_checked == len(golden.row_group_sizes) * len(golden.schema)


def row_bytes(golden: Any, column: str, group_start: int, rows: int, local: int) -> tuple[int, int]:
    """Raw bytes [a, b) of row ``local`` within its block (after the row lengths for
    bytes/strings), from the spec's values."""
    column_type = golden.schema[column]
    if isinstance(column_type, Array):
        size = column_type.row_nbytes
        return local * size, (local + 1) * size
    values = golden.columns(range(group_start, group_start + rows))[column]
    encoded = [
        v.encode("utf-8", "surrogatepass") if isinstance(column_type, String) else v for v in values
    ]
    a = 8 * rows + sum(len(v) for v in encoded[:local])
    return a, a + len(encoded[local])


def traced_row(ds: bale.Dataset, k: int, column: str) -> tuple[dict[str, Any], list[int]]:
    """``ds.row(k, [column])`` and the sizes of the file reads it made."""
    reader = reader_of(ds)
    reads: list[int] = []
    read = reader.source.read

    def counting(offset: int, size: int) -> Any:
        reads.append(size)
        return read(offset, size)

    reader.source.read = counting  # type: ignore[method-assign]
    try:
        return ds.row(k, [column]), reads
    finally:
        reader.source.read = read  # type: ignore[method-assign]


@pytest.mark.parametrize(("fmt", "name"), FRAMED)
def test_golden_cold_row_reads_only_its_frames(fmt: str, name: str) -> None:
    """A cold row of a segmented block reads (one read per run of neighbouring frames) only the
    frames holding it — and, for bytes/strings, the frames holding the block's row lengths —
    never the whole block. ``cache_bytes=0``: nothing is kept, nothing is pinned."""
    golden = golden_file(fmt, name)
    expected = golden.values()
    path = golden_path(fmt, name)
    checked = 0
    with bale.open(path) as ds:
        segment = ds.index.segment_bytes
        counts = frame_counts_of(ds)
        starts = np.cumsum([0, *ds.row_group_sizes])
    for g, rows in enumerate(golden.row_group_sizes):
        for p, column in enumerate(golden.schema):
            if counts[g, p] < 3:
                continue
            is_array = isinstance(golden.schema[column], Array)
            local = rows // 2
            a, b = row_bytes(golden, column, int(starts[g]), rows, local)
            needed = list(range(a // segment, max(b - 1, a) // segment + 1))
            if not is_array:  # the row lengths first
                needed += list(range((8 * rows - 1) // segment + 1))
            if 2 * len(set(needed)) > counts[g, p]:
                continue  # rows needing most of a block's frames read the whole block
            k = int(starts[g]) + local
            with bale.open(path, cache_bytes=0) as ds:
                reader = reader_of(ds)
                records = reader.frames.records(g, p)  # loads the frame index: one read
                assert records is not None and len(records) == counts[g, p]
                stored = int(ds.index.blocks[g, p]["stored_size"])
                ends = np.append(records["offset"][1:].astype(np.int64) - 8, stored)
                sizes = ends - records["offset"].astype(np.int64)
                got, reads = traced_row(ds, k, column)
            assert_row(got, {column: expected[column]}, k, "cold row")
            where = (column, g, reads, stored)
            assert 1 <= len(reads) <= 2, where
            # Each read spans neighbouring frames and the length fields between them.
            assert sum(reads) <= sum(int(sizes[f]) + 8 for f in needed), where
            assert sum(reads) < stored, where
            checked += 1
    assert checked >= 2, "the file has segmented blocks of several frames"
