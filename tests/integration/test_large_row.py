"""Rows larger than 2 GiB (the buffer limit of lz4 and blosc2) round-trip: blocks above
``segment_bytes`` are stored as several codec frames. The fast variants use a tiny segment size."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import xxhash

import bale
from bale._core.dataset import reader_of
from bale.format.schema import Array, Bytes, String

BIG = 2**31 + 64  # one row, just past 2 GiB
GIB = 1 << 30
# Positions where a misplaced, dropped or duplicated segment would show.
MARKS = [0, 1, GIB - 1, GIB, GIB + 1, 2 * GIB - 1, 2 * GIB, BIG - 1]


def periodic_bytes(n: int, period: int = 251) -> np.ndarray:
    """n bytes repeating with a period that does not divide the segment size, touching the memory
    once (np.resize/np.tile would be several times slower at this size)."""
    out = np.empty(n, np.uint8)
    out[:period] = (np.arange(period) * 7 + 3) % 256
    filled = period
    while filled < n:
        step = min(filled, n - filled)
        out[filled : filled + step] = out[:step]
        filled += step
    marks = [m for m in MARKS if m < n]
    out[marks] = np.arange(1, len(marks) + 1, dtype=np.uint8) * 29
    return out


def enough_memory(gib: float) -> bool:
    return psutil.virtual_memory().available > gib * GIB


@pytest.mark.slow
def test_array_row_over_2_gib_round_trips(tmp_path: Path) -> None:
    if not enough_memory(9):
        pytest.skip("needs about 9 GiB of free memory")
    path = tmp_path / "big_array.bale"
    x = periodic_bytes(BIG)
    digest = xxhash.xxh3_64_intdigest(x)
    marks = x[MARKS].copy()
    with bale.Writer(path, {"x": Array("uint8", (BIG,))}, codecs={"x": "lz4"}) as w:
        w.write({"x": x[np.newaxis]})
    del x
    with bale.open(path) as ds:
        assert ds.index.segment_bytes == GIB  # the default
        record = ds.index.blocks[0, 0]
        assert int(record["raw_size"]) == BIG
        assert len(ds) == 1 and ds.schema.describe() == {"x": f"uint8[{BIG}]"}
        got = ds["x"][0]
        assert got.shape == (BIG,) and got.dtype == np.uint8
        np.testing.assert_array_equal(got[MARKS], marks)
        assert xxhash.xxh3_64_intdigest(got) == digest
        # Three frames (1 GiB, 1 GiB, 64 bytes), each preceded by its stored length.
        payload = reader_of(ds).source.read(int(record["offset"]), int(record["stored_size"]))
        assert count_frames(bytes(payload)) == 3


@pytest.mark.slow
def test_bytes_row_over_2_gib_round_trips(tmp_path: Path) -> None:
    if not enough_memory(9):
        pytest.skip("needs about 9 GiB of free memory")
    path = tmp_path / "big_bytes.bale"
    # BIG is a multiple of the period (2112 = 64 * 33), which does not divide the segment size.
    period = periodic_bytes(2112, period=2112).tobytes()
    value = period * (BIG // len(period))
    assert len(value) == BIG
    digest = xxhash.xxh3_64_intdigest(value)
    marks = [value[m] for m in MARKS]
    schema = {"b": Bytes(), "k": Array("int8")}
    # One row per group: the big row's block holds it alone (the writer then copies it once).
    with bale.Writer(path, schema, codecs={"b": "lz4"}, row_group_rows=1) as w:
        w.write({"b": [b"small", value, b""], "k": np.array([1, 2, 3], np.int8)})
    del value
    with bale.open(path) as ds:
        assert ds.row_group_sizes == (1, 1, 1)
        record = ds.index.blocks[1, 0]
        assert int(record["raw_size"]) == 8 + BIG
        payload = reader_of(ds).source.read(int(record["offset"]), int(record["stored_size"]))
        assert count_frames(bytes(payload)) == 3
        del payload
        assert ds[0]["b"] == b"small" and ds[2]["b"] == b""
        row = ds[1]
        assert row["k"] == 2
        got = row["b"]
        assert len(got) == BIG
        assert [got[m] for m in MARKS] == marks
        assert xxhash.xxh3_64_intdigest(got) == digest


@pytest.mark.slow
def test_source_reads_over_2_gib_in_one_call(tmp_path: Path) -> None:
    """Linux moves at most 0x7ffff000 bytes per read call, so reading an uncompressed block over
    2 GiB must loop. A sparse file keeps this cheap on disk."""
    if not enough_memory(4):
        pytest.skip("needs about 4 GiB of free memory")
    from bale.io.source import LocalSource

    path = tmp_path / "sparse.bin"
    with path.open("wb") as f:
        f.truncate(64 + BIG + 4)
    fd = os.open(path, os.O_WRONLY)
    try:
        for k, mark in enumerate(MARKS):
            os.pwrite(fd, bytes([k + 1]), 64 + mark)
        os.pwrite(fd, b"tail", 64 + BIG)
    finally:
        os.close(fd)
    source = LocalSource(path)
    try:
        data = source.read(64, BIG)
        assert len(data) == BIG
        got = np.frombuffer(data, np.uint8)
        np.testing.assert_array_equal(got[MARKS], np.arange(1, len(MARKS) + 1))
        assert int(np.count_nonzero(got)) == len(MARKS)
        del got, data
        assert bytes(source.read(64 + BIG, 4)) == b"tail"
        with pytest.raises(bale.TruncatedFileError, match="ends after"):
            source.read(64, BIG + 5)
    finally:
        source.close()


def count_frames(payload: bytes) -> int:
    """Frames of a segmented block: (u64 stored length, frame) pairs filling the payload."""
    frames, position = 0, 0
    while position < len(payload):
        (length,) = struct.unpack_from("<Q", payload, position)
        position += 8 + length
        frames += 1
    assert position == len(payload)
    return frames


# -- the same framing with a tiny segment size, for every codec ---------------------------------

CODEC_SPECS = ["none", "lz4", "zstd", "zstd:19", "blosc2", "blosc2:lz4:5:bitshuffle"]


def small_columns(n: int) -> dict[str, Any]:
    i = np.arange(n)
    return {
        "a": (i[:, None] * 1000 + np.arange(37)[None, :]).astype(np.int64),  # 296 B per row
        "f": np.sin(i * 0.1).astype(np.float32),
        "b": [bytes(range(k % 256)) * (1 + k % 9) for k in range(n)],
        "s": [f"{k}:" + "\u0444" * (k % 600) for k in range(n)],
    }


@pytest.mark.parametrize("codec", CODEC_SPECS)
@pytest.mark.parametrize("segment_bytes", [1, 1000, 4096])
def test_small_segments_round_trip(tmp_path: Path, codec: str, segment_bytes: int) -> None:
    path = tmp_path / "segments.bale"
    n = 40 if segment_bytes == 1 else 300
    columns = small_columns(n)
    schema = {"a": Array("int64", (37,)), "f": Array("float32"), "b": Bytes(), "s": String()}
    with bale.Writer(
        path,
        schema,
        codecs=dict.fromkeys(columns, codec),
        segment_bytes=segment_bytes,
        row_group_rows=n // 3 + 1,
    ) as w:
        w.write(columns)
    with bale.open(path) as ds:
        assert ds.index.segment_bytes == segment_bytes
        raw = ds.index.blocks["raw_size"]
        assert int(raw.max()) > 10 * segment_bytes  # several frames per block
        got = ds.read()
        np.testing.assert_array_equal(got["a"], columns["a"])
        np.testing.assert_array_equal(got["f"], columns["f"])
        assert got["b"] == columns["b"]
        assert got["s"] == columns["s"]
        for k in (0, n // 2, n - 1):
            row = ds[k]
            np.testing.assert_array_equal(row["a"], columns["a"][k])
            assert row["s"] == columns["s"][k] and row["b"] == columns["b"][k]
        # The stored payload of a segmented block is (u64 length, frame) pairs, one per segment.
        record = ds.index.blocks[0, 0]
        payload = bytes(
            reader_of(ds).source.read(int(record["offset"]), int(record["stored_size"]))
        )
    assert count_frames(payload) == -(-int(record["raw_size"]) // segment_bytes)


@pytest.mark.parametrize("segment_bytes", [1000, 4096])
def test_small_segments_survive_append_and_repair(tmp_path: Path, segment_bytes: int) -> None:
    from bale.ops.repair import repair

    path = tmp_path / "segments.bale"
    columns = small_columns(200)
    first = {k: v[:120] for k, v in columns.items()}
    rest = {k: v[120:] for k, v in columns.items()}
    bale.write(path, first, segment_bytes=segment_bytes, row_group_rows=50, codecs={"a": "lz4"})
    with bale.Writer(path, mode="a", row_group_rows=50) as w:
        w.write(rest)
    with bale.open(path) as ds:
        assert ds.index.segment_bytes == segment_bytes
        footer = int(ds.index.groups[-1]["offset"] + ds.index.groups[-1]["length"])
    with path.open("r+b") as f:  # drop the footer: repair must use the header's segment size
        f.truncate(footer)
    report = repair(path)
    assert report.rows == 200
    with bale.open(path) as ds:
        got = ds.read()
        np.testing.assert_array_equal(got["a"], columns["a"])
        assert got["s"] == columns["s"] and got["b"] == columns["b"]
